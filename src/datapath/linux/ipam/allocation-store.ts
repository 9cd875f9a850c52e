// The persisted pod address allocations of one network, in host-local's on-disk layout so the
// same tools and habits apply: <dataDir>/<network>/<ip> holds "<containerID>\n<ifname>", and
// last_reserved_ip.0 the last address given (the next ADD continues after it, round-robin, so
// a released address is not handed out again at once). Plugin processes run concurrently and
// share nothing but this directory: an address belongs to whoever creates its file with O_EXCL.
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../util/atomic-write.js';
import { CniCode, CniError } from '../cni/spec.js';
import { allocatableFrom, ipv4ToText, isAllocatable, type PodRange } from './pod-cidr.js';

/** Who holds an address: one interface of one container. */
export interface Owner {
  readonly containerId: string;
  readonly ifname: string;
}

export interface Allocation {
  readonly ip: string;
  /** Undefined while the file is being written (or when a crash left it empty or garbled). */
  readonly owner: Owner | undefined;
}

const LAST_RESERVED = 'last_reserved_ip.0';
/** An allocation file without a readable owner is being written; after this long it is debris GC may remove. */
const UNREADABLE_GRACE_MS = 60_000;

function errorCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

function ioError(what: string, e: unknown): CniError {
  return new CniError(CniCode.IoFailure, what, e instanceof Error ? e.message : String(e));
}

function sameOwner(a: Owner | undefined, b: Owner): boolean {
  return a !== undefined && a.containerId === b.containerId && a.ifname === b.ifname;
}

function parseOwner(content: string): Owner | undefined {
  const [containerId, ifname] = content.split(/\r?\n/).map((s) => s.trim());
  return containerId && ifname ? { containerId, ifname } : undefined;
}

export class AllocationStore {
  /** <dataDir>/<network> */
  readonly dir: string;

  constructor(dataDir: string, network: string) {
    this.dir = join(dataDir, network);
  }

  /** Creates the network's directory (0700: the allocation files say which containers run here). */
  ensureDir(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw ioError(`cannot create the IPAM data directory ${this.dir}`, e);
    }
  }

  /** Every allocation file; none when the directory does not exist yet. */
  list(): Allocation[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (e) {
      if (errorCode(e) === 'ENOENT') return [];
      throw ioError(`cannot list the IPAM data directory ${this.dir}`, e);
    }
    const out: Allocation[] = [];
    for (const ip of names) {
      if (!isIPv4(ip)) continue; // last_reserved_ip.0, temporary files
      try {
        out.push({ ip, owner: parseOwner(readFileSync(join(this.dir, ip), 'utf8')) });
      } catch (e) {
        if (errorCode(e) !== 'ENOENT') throw ioError(`cannot read ${join(this.dir, ip)}`, e);
        // released meanwhile
      }
    }
    return out;
  }

  /** The addresses `owner` holds (normally one). */
  held(owner: Owner): string[] {
    return this.list()
      .filter((a) => sameOwner(a.owner, owner))
      .map((a) => a.ip);
  }

  /**
   * An address of `range` for `owner`: the one it already holds (ADD is idempotent), else the
   * next free one after the last given. Throws AddressesExhausted when none is free.
   */
  allocate(owner: Owner, range: PodRange): string {
    this.ensureDir();
    const all = this.list();
    const mine = all.filter((a) => sameOwner(a.owner, owner));
    const kept = mine.find((a) => isAllocatable(range, a.ip));
    if (kept) return kept.ip;
    // Held under an older range (the configuration changed): no longer valid, give it back.
    for (const a of mine) this.remove(a.ip);
    const used = new Set(all.map((a) => a.ip));
    for (const ip of allocatableFrom(range, this.lastReserved())) {
      if (used.has(ip) || !this.create(ip, owner)) continue;
      try {
        writeFileAtomic(join(this.dir, LAST_RESERVED), ip, 0o600);
      } catch (e) {
        this.remove(ip);
        throw ioError(`cannot record the last reserved address in ${this.dir}`, e);
      }
      return ip;
    }
    const inUse = this.list().filter((a) => isAllocatable(range, a.ip)).length;
    const cidr = `${ipv4ToText(range.cidr.network)}/${range.cidr.prefix}`;
    throw new CniError(
      CniCode.AddressesExhausted,
      `no free address in ${cidr}: ${inUse} of ${range.size} allocatable addresses are in use`,
      `range ${ipv4ToText(range.first)}-${ipv4ToText(range.last)} without the gateway ${ipv4ToText(range.gateway)}; ` +
        `allocations are in ${this.dir}`,
    );
  }

  /** Releases everything `owner` holds; returns the addresses released (none is fine: DEL is idempotent). */
  release(owner: Owner): string[] {
    const mine = this.held(owner);
    for (const ip of mine) this.remove(ip);
    return mine;
  }

  /** Releases every allocation whose owner is not in `valid`; returns the addresses released. */
  gc(valid: readonly Owner[]): string[] {
    const keep = new Set(valid.map((o) => `${o.containerId}\n${o.ifname}`));
    const released: string[] = [];
    for (const a of this.list()) {
      const stale = a.owner ? !keep.has(`${a.owner.containerId}\n${a.owner.ifname}`) : this.isDebris(a.ip);
      if (!stale) continue;
      this.remove(a.ip);
      released.push(a.ip);
    }
    return released;
  }

  private lastReserved(): string | undefined {
    try {
      const ip = readFileSync(join(this.dir, LAST_RESERVED), 'utf8').trim();
      return isIPv4(ip) ? ip : undefined;
    } catch {
      return undefined; // none yet, or unreadable: start at the beginning of the range
    }
  }

  /** Creates the allocation file exclusively; false when another process holds the address. */
  private create(ip: string, owner: Owner): boolean {
    const path = join(this.dir, ip);
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (e) {
      if (errorCode(e) === 'EEXIST') return false;
      throw ioError(`cannot create ${path}`, e);
    }
    try {
      writeSync(fd, `${owner.containerId}\n${owner.ifname}`);
      closeSync(fd);
    } catch (e) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
      this.remove(ip);
      throw ioError(`cannot write ${path}`, e);
    }
    return true;
  }

  private remove(ip: string): void {
    const path = join(this.dir, ip);
    try {
      rmSync(path, { force: true });
    } catch (e) {
      throw ioError(`cannot remove ${path}`, e);
    }
  }

  /** A file without a readable owner that is old enough not to be a concurrent ADD still writing it. */
  private isDebris(ip: string): boolean {
    try {
      return Date.now() - statSync(join(this.dir, ip)).mtimeMs > UNREADABLE_GRACE_MS;
    } catch {
      return false;
    }
  }
}
