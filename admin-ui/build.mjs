// Builds the admin page into dist/: one bundled, minified script and stylesheet with content
// hashes in their names (served as immutable), their gzip twins, and index.html pointing at them.
import * as esbuild from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { basename, join } from 'node:path';

const dist = new URL('./dist/', import.meta.url).pathname;
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: 'src/main.js', style: 'src/style.css' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  entryNames: '[name]-[hash]',
  outdir: join(dist, 'assets'),
  metafile: true,
  legalComments: 'none',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const script = outputs.find((f) => f.startsWith('app-') && f.endsWith('.js'));
const style = outputs.find((f) => f.startsWith('style-') && f.endsWith('.css'));
const html = readFileSync('src/index.html', 'utf8')
  .replace('{{SCRIPT}}', `/assets/${script}`)
  .replace('{{STYLE}}', `/assets/${style}`);
writeFileSync(join(dist, 'index.html'), html);

let plain = 0;
let zipped = 0;
for (const dir of [dist, join(dist, 'assets')]) {
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    if (!f.isFile()) continue;
    const bytes = readFileSync(join(dir, f.name));
    const gz = gzipSync(bytes, { level: 9 });
    writeFileSync(join(dir, `${f.name}.gz`), gz);
    plain += bytes.length;
    zipped += gz.length;
  }
}
console.log(`admin-ui built into dist/: ${plain} bytes, ${zipped} gzipped (${script}, ${style})`);
