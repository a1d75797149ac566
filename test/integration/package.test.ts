// The package as a user installs it: the types reachable from its entry point import only
// node's modules and runtime dependencies that come with their types (a consumer compiling with
// skipLibCheck false has no devDependency types such as @types/jsonwebtoken), and the errors
// the embedded server documents are importable from the root.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { it } from 'node:test';
import ts from 'typescript';
import { DataDirLockedError, startServer } from '../../src/index.js';

const root = resolve(import.meta.dirname, '../..');

it('the public .d.ts files import only node: modules and runtime dependencies', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { types: string; dependencies: Record<string, string> };
  const seen = new Set<string>();
  const bare = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from |import\()['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.d.ts')));
      else bare.add(spec);
    }
  };
  visit(join(root, pkg.types));
  assert.ok(seen.size > 10, `followed ${seen.size} files`);
  // Resolved as a consumer's compiler resolves them; types found in a package that is not a
  // dependency (e.g. @types/jsonwebtoken, a devDependency here) are not installed with us.
  const options = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext };
  const entry = join(root, pkg.types);
  const untyped = [...bare].filter((spec) => {
    if (spec.startsWith('node:')) return false;
    const resolved = ts.resolveModuleName(spec, entry, options, ts.sys).resolvedModule;
    if (resolved === undefined || !resolved.resolvedFileName.endsWith('.d.ts')) return true;
    const owner = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(resolved.resolvedFileName)?.[1];
    return owner === undefined || !(owner in pkg.dependencies);
  });
  assert.deepEqual(untyped, []);
});

it('DataDirLockedError, which startServer documents, is exported from the root', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'etcd-ts-pkg-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const first = await startServer({ dataDir });
  t.after(() => first.close());
  await assert.rejects(startServer({ dataDir }), DataDirLockedError);
});
