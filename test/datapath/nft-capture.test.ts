// The capture rules as text: what they redirect and exempt, that they are deterministic and
// refuse bad options, and (as root) that nft accepts them (`nft -c`, in a scratch namespace).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { captureNftScript } from '../../src/datapath/linux/capture/nft-capture.js';
import { datapathSkipReason, netns } from '../helpers/cni.js';

test('defaults: pods outbound TCP to :15001, the proxy ports on the node exempt, no output hook, no inbound', () => {
  const s = captureNftScript();
  assert.match(s, /^table ip trellis-capture \{\}\ndelete table ip trellis-capture\ntable ip trellis-capture \{$/m);
  assert.match(s, /type nat hook prerouting priority dstnat - 5; policy accept;/);
  assert.match(s, /^\t\tiifname "trl\*" meta l4proto tcp jump pod-outbound$/m);
  assert.match(s, /^\t\tfib daddr type local tcp dport \{ 15001, 15006, 15008, 15020 \} return$/m);
  assert.match(s, /^\t\tmeta l4proto tcp redirect to :15001$/m);
  assert.doesNotMatch(s, /hook output/, 'what the node originates is never captured');
  assert.doesNotMatch(s, /redirect to :15006/, 'inbound capture is off');
  assert.doesNotMatch(s, /ip daddr|dport \d+ return/, 'no exclusions unless asked');
});

test('exclusions, ports and inbound capture', () => {
  const s = captureNftScript({
    outboundPort: 16001,
    inboundPort: 16006,
    hbonePort: 16008,
    metricsPort: 16020,
    excludeCidrs: ['10.96.0.1', '169.254.0.0/16', '10.0.0.0/8', '10.96.0.0/12'],
    excludePorts: [53, 22, 53],
    inbound: true,
  });
  assert.match(s, /fib daddr type local tcp dport \{ 16001, 16006, 16008, 16020 \} return/);
  assert.match(s, /^\t\tip daddr \{ 10\.0\.0\.0\/8, 169\.254\.0\.0\/16 \} return$/m, 'contained CIDRs dropped, sorted');
  assert.match(s, /^\t\ttcp dport \{ 22, 53 \} return$/m);
  assert.match(s, /redirect to :16001$/m);
  assert.match(
    s,
    /^\t\tiifname != "trl\*" iifname != "lo" fib daddr oifname "trl\*" tcp dport != 16008 redirect to :16006$/m,
  );
  // A single element needs no set braces; host bits are cleared.
  const one = captureNftScript({ excludeCidrs: ['192.168.1.7/24'], excludePorts: [53] });
  assert.match(one, /ip daddr 192\.168\.1\.0\/24 return/);
  assert.match(one, /tcp dport 53 return/);
});

test('deterministic: the same options in any order give the same script', () => {
  const a = captureNftScript({ excludeCidrs: ['10.1.0.0/16', '10.2.0.0/16', '10.1.0.0/16'], excludePorts: [443, 53] });
  const b = captureNftScript({ excludeCidrs: ['10.2.0.0/16', '10.1.0.0/16'], excludePorts: [53, 443] });
  assert.equal(a, b);
  assert.equal(captureNftScript(), captureNftScript({}));
});

test('bad options are refused, every problem named', () => {
  assert.throws(
    () =>
      captureNftScript({ outboundPort: 0, excludeCidrs: ['fd00::/8', '10.0.0.0/33', 'nope'], excludePorts: [70000] }),
    (e: Error) => {
      for (const m of [
        /outboundPort: 0/,
        /fd00::\/8 is not IPv4/,
        /prefix length "33"/,
        /"nope"/,
        /excludePorts: 70000/,
      ])
        assert.match(e.message, m);
      return true;
    },
  );
});

test('nft accepts the scripts (nft -c in a scratch namespace)', { skip: datapathSkipReason() }, () => {
  const ns = netns(`trl-nftcap-${process.pid}`);
  try {
    for (const opts of [
      {},
      { excludeCidrs: ['10.96.0.0/12', '10.96.0.10/32', '169.254.169.254'], excludePorts: [53, 22], inbound: true },
      { excludeCidrs: ['0.0.0.0/0'], excludePorts: [1] },
    ]) {
      const r = spawnSync('ip', ['netns', 'exec', ns.name, 'nft', '-c', '-f', '-'], {
        input: captureNftScript(opts),
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, `${JSON.stringify(opts)}: ${r.stderr}`);
    }
  } finally {
    ns.remove();
  }
});
