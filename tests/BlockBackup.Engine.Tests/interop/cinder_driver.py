#!/usr/bin/python3
"""Run OpenStack Cinder's real posix backup driver (Debian's python3-cinder) on image files.

    cinder_driver.py probe
    cinder_driver.py backup VOLUME REPO BACKUP_ID VOLUME_ID [--parent ID] [--compression ALG] [--file-size N]
    cinder_driver.py restore REPO BACKUP_ID TARGET [--keep-target]

Only what a deployment would provide is stood in for: the database (one JSON record per backup
under REPO/.cinder-db, or, for backups another tool wrote, a record derived from the metadata
file found in the repository), notifications and volume metadata. The driver code is unmodified.
Used by BlockBackup's interoperability tests.
"""
import argparse
import datetime
import json
import os
import re
import sys
from unittest import mock

from oslo_config import cfg

CONF = cfg.CONF
META = re.compile(r"^(volume_(.+)_(\d{14})_backup_(.+))_metadata$")


class Record:
    FIELDS = ("id", "volume_id", "parent_id", "container", "service_metadata", "display_name",
              "display_description", "created_at", "size", "status", "object_count", "availability_zone")

    def __init__(self, db, **kw):
        self._db = db
        for f in self.FIELDS:
            setattr(self, f, kw.get(f))

    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)

    def save(self):
        os.makedirs(self._db, exist_ok=True)
        with open(os.path.join(self._db, self.id + ".json"), "w") as fh:
            json.dump({f: getattr(self, f) for f in self.FIELDS}, fh, default=str)

    def refresh(self):
        pass

    def as_read_deleted(self, mode="yes"):
        return mock.MagicMock()


def load(repo, backup_id):
    db = os.path.join(repo, ".cinder-db")
    path = os.path.join(db, backup_id + ".json")
    if os.path.exists(path):
        with open(path) as fh:
            return Record(db, **json.load(fh))
    for root, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            m = META.match(name)
            if m and m.group(4) == backup_id:
                with open(os.path.join(root, name)) as fh:
                    meta = json.load(fh)
                return Record(db, id=backup_id, volume_id=meta["volume_id"], parent_id=meta.get("parent_id"),
                              container=os.path.relpath(root, repo), service_metadata=m.group(1),
                              display_name=meta.get("backup_name"), size=1, status="available",
                              object_count=len(meta["objects"]))
    sys.exit("backup %s not found in %s" % (backup_id, repo))


def driver(repo, args):
    # Modules that register command-line options must be imported before CONF is parsed.
    from cinder import context, objects
    import cinder.db
    from cinder.volume import volume_utils
    CONF([], project="cinder", default_config_files=[], default_config_dirs=[])
    import cinder.backup.drivers.posix as posix
    CONF.set_override("backup_posix_path", os.path.abspath(repo))
    if getattr(args, "file_size", None):
        CONF.set_override("backup_file_size", args.file_size)
    if getattr(args, "compression", None):
        CONF.set_override("backup_compression_algorithm", args.compression)
    volume_utils.notify_about_backup_usage = lambda *a, **k: None
    cinder.db.dispose_engine = lambda: None
    objects.Backup = mock.Mock()
    objects.Backup.get_by_id = lambda ctx, bid, **k: load(repo, bid)
    drv = posix.PosixBackupDriver(context.get_admin_context())
    drv.db = mock.Mock()
    drv.db.volume_get = lambda ctx, vid: {"id": vid, "size": 1}
    drv.get_metadata = lambda volume_id: None
    drv.put_metadata = lambda volume_id, meta: None
    return drv


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("probe")
    b = sub.add_parser("backup")
    for name in ("volume", "repo", "backup_id", "volume_id"):
        b.add_argument(name)
    b.add_argument("--parent")
    b.add_argument("--compression")
    b.add_argument("--file-size", type=int)
    r = sub.add_parser("restore")
    for name in ("repo", "backup_id", "target"):
        r.add_argument(name)
    r.add_argument("--keep-target", action="store_true")
    a = p.parse_args()
    if a.cmd == "probe":
        import cinder.backup.drivers.posix  # noqa: F401
        print("cinder posix driver available")
        return
    if a.cmd == "backup":
        os.makedirs(a.repo, exist_ok=True)
        drv = driver(a.repo, a)
        rec = Record(os.path.join(a.repo, ".cinder-db"), id=a.backup_id, volume_id=a.volume_id, parent_id=a.parent,
                     display_name="cinder-" + a.backup_id[:8], created_at=datetime.datetime.utcnow(),
                     size=1, status="creating", object_count=0)
        rec.save()
        with open(a.volume, "rb") as fh:
            drv.backup(rec, fh)
        rec.status = "available"
        rec.save()
    else:
        drv = driver(a.repo, a)
        rec = load(a.repo, a.backup_id)
        rec.status = "restoring"
        with open(a.target, "r+b" if a.keep_target else "wb") as fh:
            drv.restore(rec, rec.volume_id, fh)
    print("ok")


if __name__ == "__main__":
    main()
