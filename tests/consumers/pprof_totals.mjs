// Decodes a (gzipped) pprof file with the pprof-format npm package and prints, as JSON, its
// sample types, the total of each value column, and each column's total per leaf function.
// Usage: node pprof_totals.mjs PPROF_FORMAT_DIR FILE
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [dir, file] = process.argv.slice(2);
const { Profile } = await import(pathToFileURL(join(dir, 'dist/esm/index.js')).href);
let raw = readFileSync(file);
if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw);
const prof = Profile.decode(raw);
const str = (i) => prof.stringTable.strings[Number(i)];
const funcs = new Map(prof.function.map((f) => [String(f.id), str(f.name)]));
const locs = new Map(prof.location.map((l) => [String(l.id), l]));
const types = prof.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`);
const totals = types.map(() => 0);
const leaf = types.map(() => ({}));
for (const s of prof.sample) {
  const loc = locs.get(String(s.locationId[0]));
  const lines = loc ? loc.line : [];
  const name = lines.length ? funcs.get(String(lines[0].functionId)) : '?';
  s.value.forEach((v, i) => {
    totals[i] += Number(v);
    leaf[i][name] = (leaf[i][name] || 0) + Number(v);
  });
}
console.log(JSON.stringify({ types, totals, leaf, samples: prof.sample.length }));
