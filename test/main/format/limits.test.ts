// Tests for limits.ts: the format constants have the values the reference tools use.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as L from '../../../src/main/format/limits.js';

it('format constants match FORMAT.md §3.3, §4.1–§4.3', () => {
  assert.equal(L.CHUNK_SIZE_BYTES, 100 * 1024 * 1024);
  assert.equal(L.CHUNK_SIZE_BYTES, 256 * 409_600); // v3 reader loop: 256 reads of 409600 bytes
  assert.equal(L.V2_TAPE_LENGTH_KIB, 100_000);
  assert.equal(L.V2_VOLUME_BYTES, 102_400_000);
  assert.equal(L.HEADER_MAX_BYTES, 4096);
  assert.equal(L.HMAC_FILE_MAX_BYTES, 4096);
  assert.equal(L.QUBES_XML_MAX_BYTES, 1_048_576);
  assert.equal(L.MAX_MEMBER_NAME_BYTES, 255);
  assert.equal(L.USTAR_NAME_BYTES + L.USTAR_PREFIX_BYTES, 255);
  assert.equal(L.MAX_CHUNK_INDEX, 99_999);
  assert.ok(L.MAX_PATH_DEPTH >= 4 && L.MAX_PATH_DEPTH <= 64);
});
