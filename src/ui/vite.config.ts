import path from 'node:path';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({
  root: path.resolve(import.meta.dirname, 'web'),
  // Assets are served by the platform under /assets/; pages are addressed with hash routes (/#/workspaces/<id>).
  base: '/',
  plugins: [react()],
  // React's production build whatever NODE_ENV the building process has.
  define: { 'process.env.NODE_ENV': JSON.stringify('production') },
  build: {
    outDir: path.resolve(import.meta.dirname, '..', '..', 'dist', 'ui'),
    emptyOutDir: true,
    target: 'es2022',
    // Inline assets would need data: URIs, which a strict CSP may refuse; emit files instead.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
