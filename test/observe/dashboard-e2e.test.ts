// The dashboard in a real browser: `trellis up -f examples/shop`, traffic through the gateway
// (gateway -> frontend -> api via the waypoint -> orders over TCP) and connections the policy
// refuses (frontend -> orders), then headless Chromium (Debian's, driven by playwright-core)
// loads the URL `trellis up` printed and finds the demo's edges with their numbers, the golden
// signals, the flow table with the denials highlighted, and saves a screenshot.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { httpGet, meshUp, tcpExchangeVia, type MeshUp } from '../helpers/mesh-up.js';
import { REPO_ROOT } from '../helpers/run-cli.js';

const CHROMIUM = '/usr/bin/chromium';
const REQUESTS = 40;
const DENIED = 3;
/** Where the screenshot goes (ignored by git). */
const SHOT_DIR = join(REPO_ROOT, 'test-results');

// Without the background-networking flags Chromium keeps trying to reach Google's hosts.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function edgeSelector(source: string, target: string): string {
  return `g[data-testid="edge"][data-source="${source}"][data-target="${target}"]`;
}

async function edgeRate(page: Page, source: string, target: string): Promise<number> {
  return Number(await page.locator(edgeSelector(source, target)).getAttribute('data-rate'));
}

test(
  'the dashboard shows the demo mesh: service graph with rates and mTLS, golden signals, flows and denials',
  { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (Debian package chromium)` },
  async (t) => {
    let mesh: MeshUp | undefined;
    let browser: Browser | undefined;
    try {
      mesh = await meshUp();
      const out = mesh.stdout();
      const url = /dashboard\s+(http:\/\/\S+)/.exec(out)?.[1];
      assert.ok(url, `trellis up printed no dashboard URL:\n${out}`);
      const frontendProxy = /shop\/frontend\s.*HTTP_PROXY=(\S+?),?\s/.exec(out)?.[1];
      assert.ok(frontendProxy, out);

      for (let i = 0; i < REQUESTS; i++) {
        const r = await httpGet('http://127.0.0.1:8000/call', { host: 'shop.localhost' });
        assert.equal(r.status, 200, r.body);
      }
      // orders admits only api's identity: the frontend's connections are refused at orders' node.
      for (let i = 0; i < DENIED; i++) {
        const r = await tcpExchangeVia(frontendProxy, 'orders.shop.svc.cluster.local:7000', 'ping\n');
        assert.equal(r.status, 403);
      }

      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const consoleErrors: string[] = [];
      page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
      page.on('pageerror', (e) => consoleErrors.push(String(e)));
      await page.goto(url, { timeout: 15_000 });
      await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });

      // The graph: every hop of the demo, with numbers.
      await page.waitForSelector(edgeSelector('svc:shop/frontend', 'svc:shop/api'), { timeout: 15_000 });
      for (const id of ['gw:shop/shop-gateway', 'svc:shop/frontend', 'svc:shop/api', 'svc:shop/orders'])
        assert.equal(await page.locator(`g[data-testid="node"][data-id="${id}"]`).count(), 1, id);
      const api = page.locator(edgeSelector('svc:shop/frontend', 'svc:shop/api'));
      assert.equal(await api.getAttribute('data-protocol'), 'http');
      assert.equal(await api.getAttribute('data-mtls'), 'mutual_tls');
      assert.ok((await edgeRate(page, 'svc:shop/frontend', 'svc:shop/api')) > 0);
      const label = (await api.locator('[data-testid="edge-label"]').textContent()) ?? '';
      assert.match(label, /[\d.]+ rps · [\d.]+% err · p99 [\d.]+ ms/, label);
      assert.ok((await edgeRate(page, 'gw:shop/shop-gateway', 'svc:shop/frontend')) > 0);
      const orders = page.locator(edgeSelector('svc:shop/api', 'svc:shop/orders'));
      assert.equal(await orders.getAttribute('data-protocol'), 'tcp');
      assert.match((await orders.locator('[data-testid="edge-label"]').textContent()) ?? '', /conn\/s/);
      // The refused connections: a red edge, not a hop of the demo.
      const denied = page.locator(edgeSelector('svc:shop/frontend', 'svc:shop/orders'));
      assert.equal(await denied.getAttribute('data-denied'), 'true');
      assert.match((await denied.locator('[data-testid="edge-label"]').textContent()) ?? '', /denied\/s/);

      // The page shows what the API answers (same window, so the same request count).
      const graph = (await (await fetch(new URL('/api/graph?window=60', url))).json()) as {
        edges: { source: string; target: string; total: number }[];
      };
      const apiEdge = graph.edges.find((e) => e.source === 'svc:shop/frontend' && e.target === 'svc:shop/api');
      assert.equal(apiEdge?.total, REQUESTS, JSON.stringify(graph.edges));

      // Golden signals: a card per service, with a rate.
      await page.waitForSelector(
        '[data-testid="service-card"][data-service="svc:shop/api"] svg[data-testid="chart-rate"]',
        {
          timeout: 15_000,
        },
      );
      assert.ok(
        (
          await page
            .locator('[data-testid="service-card"][data-service="svc:shop/api"] [data-testid="value-rate"]')
            .textContent()
        )?.match(/\d/),
      );

      // Flows: the denials are highlighted and listed with the policy in force.
      await page.waitForSelector('table[data-testid="flows"] tbody tr.denied', { timeout: 15_000 });
      assert.ok((await page.locator('table[data-testid="flows"] tbody tr[data-verdict="FORWARDED"]').count()) > 0);
      const denials = page.locator('[data-testid="denials"] [data-testid="denial"]');
      assert.ok((await denials.count()) >= DENIED);
      assert.match((await denials.first().textContent()) ?? '', /orders-allow-api/);
      assert.ok(
        Number((await page.locator('[data-testid="denial-count"]').textContent())?.match(/\d+/)?.[0]) >= DENIED,
      );

      // Filtering on the verdict asks the relay again: only denials remain.
      await page.selectOption('select[data-testid="filter-verdict"]', 'DENIED');
      // (A string: this file is compiled without the DOM's types.)
      await page.waitForFunction(
        `(() => { const rows = [...document.querySelectorAll('table[data-testid="flows"] tbody tr')];
          return rows.length > 0 && rows.every((r) => r.getAttribute('data-verdict') === 'DENIED'); })()`,
        undefined,
        { timeout: 10_000 },
      );
      await page.selectOption('select[data-testid="filter-verdict"]', '');

      mkdirSync(SHOT_DIR, { recursive: true });
      const shot = join(SHOT_DIR, 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      t.diagnostic(`screenshot: ${shot}`);
      assert.deepEqual(consoleErrors, []);
    } finally {
      await browser?.close();
      await mesh?.stop();
    }
  },
);
