#!/usr/bin/env node
// The `molecule` command: runs the built CLI (dist/cli.js), rebuilding it first when src/ is newer (~0.2 s with
// esbuild), so a fresh checkout works without `npm run build`.
import { bundleUrl, ensureBundles } from '../tools/build/bundle.mjs';

await ensureBundles(['cli']);
const { main } = await import(bundleUrl('cli'));
await main();
