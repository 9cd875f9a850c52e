// Three-valued (Kleene) matching. An attribute the caller cannot supply (HTTP fields at L4,
// metadata, a missing source address...) makes its leaf UNKNOWN instead of false: a plain
// false would turn into true under not_rule/not_id (an ALLOW rule with notPaths would then
// allow every connection at L4). The caller of a policy decides what UNKNOWN means:
// ALLOW treats it as no match, DENY as a match (fail closed both ways).
import type { RbacAttributes } from './attributes.js';

export const NO = 0;
export const YES = 1;
export const UNKNOWN = 2;
export type Tri = typeof NO | typeof YES | typeof UNKNOWN;

export type Eval = (a: RbacAttributes) => Tri;

/** A compiled matcher; `constant` is set when the result does not depend on the attributes (folded away). */
export interface Node {
  readonly constant: Tri | undefined;
  readonly f: Eval;
}

const constantNode = (t: Tri): Node => ({ constant: t, f: () => t });
export const NO_NODE = constantNode(NO);
export const YES_NODE = constantNode(YES);
export const UNKNOWN_NODE = constantNode(UNKNOWN);

export function leaf(f: Eval): Node {
  return { constant: undefined, f };
}

/** AND: NO if any is NO, else UNKNOWN if any is UNKNOWN, else YES (empty: YES). */
export function and(nodes: readonly Node[]): Node {
  let unknown = false;
  const live: Eval[] = [];
  for (const n of nodes) {
    if (n.constant === NO) return NO_NODE;
    if (n.constant === UNKNOWN) unknown = true;
    else if (n.constant === undefined) live.push(n.f);
  }
  if (live.length === 0) return unknown ? UNKNOWN_NODE : YES_NODE;
  const floor: Tri = unknown ? UNKNOWN : YES;
  if (live.length === 1) {
    const only = live[0]!;
    return leaf(floor === YES ? only : (a) => (only(a) === NO ? NO : UNKNOWN));
  }
  return leaf((a) => {
    let r: Tri = floor;
    for (let i = 0; i < live.length; i++) {
      const v = live[i]!(a);
      if (v === NO) return NO;
      if (v === UNKNOWN) r = UNKNOWN;
    }
    return r;
  });
}

/** OR: YES if any is YES, else UNKNOWN if any is UNKNOWN, else NO (empty: NO). */
export function or(nodes: readonly Node[]): Node {
  let unknown = false;
  const live: Eval[] = [];
  for (const n of nodes) {
    if (n.constant === YES) return YES_NODE;
    if (n.constant === UNKNOWN) unknown = true;
    else if (n.constant === undefined) live.push(n.f);
  }
  if (live.length === 0) return unknown ? UNKNOWN_NODE : NO_NODE;
  const floor: Tri = unknown ? UNKNOWN : NO;
  if (live.length === 1) {
    const only = live[0]!;
    return leaf(floor === NO ? only : (a) => (only(a) === YES ? YES : UNKNOWN));
  }
  return leaf((a) => {
    let r: Tri = floor;
    for (let i = 0; i < live.length; i++) {
      const v = live[i]!(a);
      if (v === YES) return YES;
      if (v === UNKNOWN) r = UNKNOWN;
    }
    return r;
  });
}

/** NOT: UNKNOWN stays UNKNOWN (the negation of something unknown is just as unknown). */
export function not(n: Node): Node {
  if (n.constant !== undefined) return n.constant === UNKNOWN ? UNKNOWN_NODE : n.constant === YES ? NO_NODE : YES_NODE;
  const f = n.f;
  return leaf((a) => {
    const v = f(a);
    return v === UNKNOWN ? UNKNOWN : v === YES ? NO : YES;
  });
}
