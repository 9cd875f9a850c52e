#!/usr/bin/env node
// Builds native/original-dst (the SO_ORIGINAL_DST addon transparent capture needs) with the
// node-gyp that ships inside npm, against local Node headers (--nodedir: npm's `nodedir`
// config, else /usr), so nothing is downloaded. Without a C toolchain it says so in one line
// and exits 0: capture is then unavailable and everything else works.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const addonDir = fileURLToPath(new URL('../native/original-dst/', import.meta.url));
const built = 'native/original-dst/build/Release/original_dst.node';

function onPath(name) {
  return (process.env.PATH ?? '').split(delimiter).find((d) => d && existsSync(join(d, name)));
}

/** npm's own node-gyp: next to the running npm (npm_execpath), else the npm on PATH. */
function findNodeGyp() {
  const npmRoots = [];
  if (process.env.npm_execpath) npmRoots.push(dirname(dirname(process.env.npm_execpath)));
  const npmDir = onPath('npm');
  if (npmDir) npmRoots.push(dirname(dirname(realpathSync(join(npmDir, 'npm')))));
  return npmRoots.map((r) => join(r, 'node_modules/node-gyp/bin/node-gyp.js')).find((p) => existsSync(p));
}

const nodedir = process.env.npm_config_nodedir || '/usr';
const nodeGyp = findNodeGyp();
const missing = [
  ...['make', 'python3'].filter((t) => !onPath(t)),
  ...(onPath('cc') || onPath('gcc') ? [] : ['a C compiler (cc)']),
  ...(nodeGyp ? [] : ["npm's node-gyp"]),
  ...(existsSync(join(nodedir, 'include/node/node_api.h')) ? [] : [`Node headers in ${nodedir}/include/node`]),
];
if (missing.length > 0) {
  console.log(
    `build-native: skipped, no toolchain (missing ${missing.join(', ')}); transparent capture is unavailable`,
  );
  process.exit(0);
}

// configure once, then `build` (make) rebuilds only what changed.
const steps = existsSync(join(addonDir, 'build/Makefile')) ? ['build'] : ['configure', 'build'];
const r = spawnSync(process.execPath, [nodeGyp, ...steps, `--nodedir=${nodedir}`, '--loglevel=warn'], {
  cwd: addonDir,
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (r.status !== 0) {
  console.error(`build-native: node-gyp ${steps.join(' ')} failed in ${addonDir}`);
  process.exit(r.status ?? 1);
}
console.log(`build-native: built ${built}`);
