"""Publish a run to Google Drive with a service account or an OAuth user token.

One module per job: `credentials` reads the key or token file, `service` builds the Drive v3 client from the
bundled discovery document, `client` makes the Drive calls with retries and clear errors, `publisher` puts a
run's files into its folder, and `compat` holds everything that relies on google-auth or googleapiclient
internals (guarded by the `test_compat_*` tests in tests/test_gdrive.py). docs/google-drive.md walks through
the set-up.
"""

from etl.publishers.gdrive.publisher import GDrivePublisher

__all__ = ["GDrivePublisher"]
