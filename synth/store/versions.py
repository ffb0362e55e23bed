"""``versions`` and ``version_items``: frozen dataset versions.

Each item keeps the row's content and lineage as they were at the freeze, so a later
edit, review or status change never alters a version or its exports; triggers in the
schema refuse any change to a frozen row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synth.errors import StoreError
from synth.records import canonical_json
from synth.store._part import Part, decode, now
from synth.store.rows import FrozenItem, VersionItem, VersionRow


class Versions(Part):
    def add(
        self,
        name: str,
        *,
        sha: str,
        config_sha: str,
        manifest: dict[str, Any],
        items: Sequence[VersionItem],
    ) -> None:
        """Store a frozen version and its items in one transaction."""
        with self._tx() as conn:
            if self._one("SELECT 1 FROM versions WHERE name = ?", (name,)):
                raise StoreError(
                    str(self.path), f"version {name!r} exists; a frozen version never changes"
                )
            conn.execute(
                "INSERT INTO versions (name, sha, created_at, config_sha, rows, manifest_json)"
                " VALUES (:name, :sha, :created_at, :config_sha, :rows, :manifest_json)",
                {
                    "name": name,
                    "sha": sha,
                    "created_at": manifest.get("created_at") or now(),
                    "config_sha": config_sha,
                    "rows": len(items),
                    "manifest_json": canonical_json(manifest),
                },
            )
            conn.executemany(
                "INSERT INTO version_items (version, example_id, position, split, source,"
                " slice, label, status, data_json, text, content_sha, lineage_json)"
                " VALUES (:version, :example_id, :position, :split, :source, :slice, :label,"
                " :status, :data_json, :text, :content_sha, :lineage_json)",
                [
                    {
                        "version": name,
                        "example_id": it["example_id"],
                        "position": i,
                        "split": it["split"],
                        "source": it["source"],
                        "slice": it["slice"],
                        "label": it["label"],
                        "status": it["status"],
                        "data_json": canonical_json(it["data"]),
                        "text": it["text"],
                        "content_sha": it["content_sha"],
                        "lineage_json": canonical_json(it["lineage"]),
                    }
                    for i, it in enumerate(items)
                ],
            )

    def all(self) -> list[VersionRow]:
        """Frozen versions, oldest first."""
        return self._versions("ORDER BY rowid")

    def get(self, name: str) -> VersionRow | None:
        """One frozen version, or None."""
        rows = self._versions("WHERE name = ?", (name,))
        return rows[0] if rows else None

    def _versions(self, where: str, params: Sequence[Any] = ()) -> list[VersionRow]:
        return [
            decode(r, "manifest_json")
            for r in self._rows(
                "SELECT name, sha, created_at, config_sha, rows, manifest_json FROM versions"
                f" {where}",
                params,
            )
        ]

    def items(self, name: str) -> list[VersionItem]:
        """A version's rows as they were frozen, in export order."""
        return [
            decode(r, "data_json", "lineage_json")
            for r in self._rows(
                "SELECT example_id, split, source, slice, label, status, data_json, text,"
                " content_sha, lineage_json FROM version_items WHERE version = ?"
                " ORDER BY position",
                (name,),
            )
        ]

    def frozen_by_content(self) -> dict[str, FrozenItem]:
        """content_sha -> the first frozen item with that content (and its version):
        lets an audit recognise an exported row after the live row was edited."""
        out: dict[str, FrozenItem] = {}
        for r in self._rows(
            "SELECT version, example_id, source, slice, label, status, text, content_sha,"
            " lineage_json FROM version_items ORDER BY rowid"
        ):
            item: FrozenItem = decode(r, "lineage_json")
            out.setdefault(item["content_sha"], item)
        return out
