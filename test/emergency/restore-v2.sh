#!/usr/bin/env bash
# Emergency restore of a format-2 backup with stock tools only, following the Qubes "emergency
# restore v2" procedure: verify each chunk's HMAC, decrypt (openssl) or gunzip EACH chunk on its
# own, then untar them as a GNU multi-volume archive with a new-volume script.
# Usage: restore-v2.sh BACKUP PASSFILE OUTDIR
set -euo pipefail
set +H
backup=$(realpath "$1"); pass=$(head -n1 "$2"); mkdir -p "$3"; out=$(realpath "$3")
mkdir -p "$out/raw" "$out/dec"; cd "$out/raw"
tar -i -xf "$backup"
algo=$(sed -n 's/^hmac-algorithm=//p' backup-header | tr 'A-Z' 'a-z')
check() {
  local got; got=$(openssl dgst "-$algo" -hmac "$pass" < "$1" | sed 's/^.*= *//')
  [ "$got" = "$(sed 's/^.*= *//' "$1.hmac")" ] || { echo "HMAC mismatch: $1" >&2; exit 1; }
}
check backup-header
encrypted=$(sed -n 's/^encrypted=//p' backup-header)
compressed=$(sed -n 's/^compressed=//p' backup-header)
cipher=$(sed -n 's/^crypto-algorithm=//p' backup-header)
cd "$out"
cat > dec/next-volume.sh <<'EOS'
#!/bin/sh
# tar -M calls this with TAR_VOLUME = number of the volume it wants next (2, 3, ...)
echo "$VOLDIR/vol.$(printf %03d $((TAR_VOLUME-1)))" >&"$TAR_FD"
EOS
chmod +x dec/next-volume.sh
n=0
find raw -name '*.000' | sed 's|^raw/||; s|\.000$||' | sort | while read -r base; do
  n=$((n+1)); vd="$out/dec/f$n"; mkdir -p "$vd"
  i=0
  for c in $(find "raw/$(dirname "$base")" -maxdepth 1 -name "$(basename "$base").[0-9][0-9][0-9]*" ! -name '*.hmac' | sort -V); do
    check "$c"
    v="$vd/vol.$(printf %03d $i)"
    if [ "$encrypted" = True ]; then openssl enc -d -md MD5 -pass "pass:$pass" "-$cipher" -in "$c" -out "$v"
    elif [ "$compressed" = True ]; then gzip -dc < "$c" > "$v"
    else cp "$c" "$v"; fi
    i=$((i+1))
  done
  VOLDIR="$vd" tar -M -F "$out/dec/next-volume.sh" -xf "$vd/vol.000"
  rm -rf "$vd"
done
