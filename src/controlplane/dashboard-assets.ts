// The dashboard's files: the page from the source tree, its scripts as the dashboard build
// compiled them (dist/src/dashboard). Read per request: they are small and rarely asked for.
import { readFile } from 'node:fs/promises';

const PAGE = new URL('../../../src/dashboard/index.html', import.meta.url);
const SCRIPTS = new URL('../dashboard/', import.meta.url);
/** Script names the page may ask for: one path segment, no way out of the folder. */
const SCRIPT_NAME = /^[a-z0-9-]+\.js$/;

export interface Asset {
  readonly body: Buffer;
  readonly contentType: string;
}

/** GET /dashboard and /dashboard/<name>.js; undefined for anything else (a 404). */
export async function dashboardAsset(pathname: string): Promise<Asset | undefined> {
  if (pathname === '/dashboard' || pathname === '/dashboard/')
    return { body: await readFile(PAGE), contentType: 'text/html; charset=utf-8' };
  const name = pathname.startsWith('/dashboard/') ? pathname.slice('/dashboard/'.length) : '';
  if (!SCRIPT_NAME.test(name)) return undefined;
  try {
    return { body: await readFile(new URL(name, SCRIPTS)), contentType: 'text/javascript; charset=utf-8' };
  } catch {
    return undefined;
  }
}
