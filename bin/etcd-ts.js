#!/usr/bin/env node
// The etcd-ts executable: same flags and ETCD_* variables as etcd. Runs the compiled server
// from dist/ (built by `npm ci` through the `prepare` script, or `npm run build`), after setting
// V8's garbage-collector flags (src/cli/gc.ts).
import { setFlagsFromString } from 'node:v8';
import { gcFlags } from '../dist/src/cli/gc.js';

for (const flag of gcFlags(process.execArgv)) setFlagsFromString(flag);
const { main } = await import('../dist/src/cli/etcd-ts.js');
main(process.argv.slice(2), process.env);
