// The console's size budget: gzip of every JS and CSS file of the build, printed, and a failure
// over 120 KB (the budget for the whole console).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const BUDGET = 120 * 1024;
const out = resolve(import.meta.dirname, '../../build/console');

function files(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

let all;
try {
  all = files(out).filter((f) => /\.(js|mjs|css)$/.test(f));
} catch {
  console.error(`console size: ${out} is missing; build the console first (npm run build)`);
  process.exit(1);
}
if (all.length === 0) {
  console.error('console size: no JS or CSS in the build');
  process.exit(1);
}
let raw = 0;
let gz = 0;
for (const f of all) {
  const b = readFileSync(f);
  const g = gzipSync(b, { level: 9 }).length;
  raw += b.length;
  gz += g;
  console.log(`  ${relative(out, f)}: ${(b.length / 1024).toFixed(1)} KB, ${(g / 1024).toFixed(1)} KB gzip`);
}
const line = `console size: JS + CSS ${(raw / 1024).toFixed(1)} KB, ${(gz / 1024).toFixed(1)} KB gzip (budget ${BUDGET / 1024} KB gzip)`;
if (gz > BUDGET) {
  console.error(`${line}: OVER BUDGET`);
  process.exit(1);
}
console.log(line);
