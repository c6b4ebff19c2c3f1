"""A no-op DAG of the same shape as a parsed one, written as a DAG file: the same tasks (empty ones empty, the
others PythonOperators whose callable does nothing, the mapped one mapped), the same edges and trigger rules, and
the same Params (defaults, schemas, descriptions) as literals. What the pipeline's DAG file costs on top of it is
what its own imports and settings cost: the bench's parse ratio."""

from __future__ import annotations

from typing import Any

HEADER = '''from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param


def noop(**_):
    return [{}]

'''


def task_line(task: Any, variable: str, variables: dict[str, str]) -> str:
    """The statement that creates `task` as a no-op of the same kind."""
    rule = f"trigger_rule={getattr(task.trigger_rule, 'value', task.trigger_rule)!r}"
    if type(task).__name__ == "EmptyOperator":
        return f"    {variable} = EmptyOperator(task_id={task.task_id!r}, {rule})"
    if type(task).__name__ == "MappedOperator":
        (upstream,) = task.upstream_task_ids
        return (f"    {variable} = PythonOperator.partial(task_id={task.task_id!r}, python_callable=noop, {rule})"
                f".expand(op_kwargs={variables[upstream]}.output)")
    return f"    {variable} = PythonOperator(task_id={task.task_id!r}, python_callable=noop, {rule})"


def params_literal(dag: Any) -> str:
    """The DAG's Params as a literal dict of Param(...) calls."""
    params = {name: dag.params.get_param(name) for name in dag.params}
    return "{" + ", ".join(f"{name!r}: Param({param.value!r}, description={param.description!r}, **{param.schema!r})"
                           for name, param in params.items()) + "}"


def same_shape_source(dag: Any) -> str:
    """The source of a no-op DAG shaped as `dag` (tasks created upstream first, so that a mapped task's source
    exists when it is expanded)."""
    order = [task.task_id for task in dag.topological_sort()]
    variables = {task_id: f"t{index}" for index, task_id in enumerate(order)}
    lines = [HEADER, f"with DAG(dag_id={dag.dag_id + '_same_shape'!r}, schedule='@once', catchup=False, "
                     f"params={params_literal(dag)}) as dag:"]
    lines += [task_line(dag.get_task(task_id), variables[task_id], variables) for task_id in order]
    lines += [f"    {variables[task_id]} >> {variables[downstream]}" for task_id in order
              for downstream in sorted(dag.get_task(task_id).downstream_task_ids)
              if type(dag.get_task(downstream)).__name__ != "MappedOperator"]
    return "\n".join(lines) + "\n"
