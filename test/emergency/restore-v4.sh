#!/usr/bin/env bash
# Emergency restore of a format-4 backup with stock tools only (tar, scrypt, gzip/bzip2/xz/zstd),
# following the Qubes "emergency restore v4" procedure. Usage: restore-v4.sh BACKUP PASSFILE OUTDIR
# Restores every file of every VM into OUTDIR (vmN/private.img, dom0-home/<user>/..., qubes.xml).
set -euo pipefail
set +H
backup=$(realpath "$1"); pass=$(head -n1 "$2"); mkdir -p "$3"; out=$(realpath "$3")
mkdir -p "$out/raw"; cd "$out/raw"
tar -i -xf "$backup"
echo "backup-header!$pass" | scrypt dec -P backup-header.hmac backup-header.verified
diff -q backup-header backup-header.verified >/dev/null || { echo "header verification failed" >&2; exit 1; }
backup_id=$(sed -n 's/^backup-id=//p' backup-header)
compressed=$(sed -n 's/^compressed=//p' backup-header)
filter=$(sed -n 's/^compression-filter=//p' backup-header)
decompress() { if [ "$compressed" = True ]; then "$filter" -d; else cat; fi; }
cd "$out"
# every file: its chunks in version order, each decrypted with "<backup-id>!<name>!<pass>"
find raw -name '*.000.enc' | sed 's|^raw/||; s|\.000\.enc$||' | sort | while read -r base; do
  find "raw/$(dirname "$base")" -maxdepth 1 -name "$(basename "$base").*.enc" | sort -V | while read -r f; do
    name=${f#raw/}; name=${name#./}
    echo "$backup_id!${name%.enc}!$pass" | scrypt dec -P "$f" || exit 1
  done | decompress | tar -x
done
