// Builds the console into ../build/console, the directory wrangler.toml's [assets] serves.
// The output is plain files: one HTML page, hashed JS and CSS, the _headers file from public/.
import { defineConfig } from 'vite';

export default defineConfig({
  root: '.',
  base: '/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../build/console',
    emptyOutDir: true,
    // The CSP allows scripts from 'self' only: no inline module-preload polyfill.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: false,
  },
});
