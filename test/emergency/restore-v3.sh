#!/usr/bin/env bash
# Emergency restore of a format-3 backup with stock tools only (tar, openssl, gzip), following the
# Qubes "emergency restore v3" procedure: verify every HMAC, concatenate the chunks of a file,
# decrypt them as ONE openssl stream, decompress, untar. Usage: restore-v3.sh BACKUP PASSFILE OUTDIR
set -euo pipefail
set +H
backup=$(realpath "$1"); pass=$(head -n1 "$2"); mkdir -p "$3"; out=$(realpath "$3")
mkdir -p "$out/raw"; cd "$out/raw"
tar -i -xf "$backup"
hexof() { sed 's/^.*= *//' "$1"; }
algo=$(sed -n 's/^hmac-algorithm=//p' backup-header | tr 'A-Z' 'a-z')
check() { # check FILE: its HMAC must equal FILE.hmac
  local got; got=$(openssl dgst "-$algo" -hmac "$pass" < "$1" | sed 's/^.*= *//')
  [ "$got" = "$(hexof "$1.hmac")" ] || { echo "HMAC mismatch: $1" >&2; exit 1; }
}
check backup-header
encrypted=$(sed -n 's/^encrypted=//p' backup-header)
compressed=$(sed -n 's/^compressed=//p' backup-header)
filter=$(sed -n 's/^compression-filter=//p' backup-header)
cipher=$(sed -n 's/^crypto-algorithm=//p' backup-header)
cd "$out"
find raw -name '*.000' | sed 's|^raw/||; s|\.000$||' | sort | while read -r base; do
  chunks=$(find "raw/$(dirname "$base")" -maxdepth 1 -name "$(basename "$base").[0-9][0-9][0-9]*" ! -name '*.hmac' | sort -V)
  for c in $chunks; do check "$c"; done
  cat $chunks > stream.tmp
  if [ "$encrypted" = True ]; then openssl enc -d -md MD5 -pass "pass:$pass" "-$cipher" -in stream.tmp -out stream.dec; else mv stream.tmp stream.dec; fi
  if [ "$compressed" = True ]; then "$filter" -d < stream.dec > stream.tar; else mv stream.dec stream.tar; fi
  tar -xf stream.tar
  rm -f stream.tmp stream.dec stream.tar
done
