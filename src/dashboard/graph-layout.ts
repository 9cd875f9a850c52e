// Deterministic layered layout: a node's column is its longest path from the nodes nobody
// calls (so gateway -> frontend -> api -> orders reads left to right), rows in a column are
// ordered by id. The same graph always lands in the same place, so a 2 s refresh never jumps.
import type { GraphEdge, GraphNode } from '../observe/graph-types.js';

export const COLUMN_GAP = 290;
export const ROW_GAP = 130;
export const MARGIN = { left: 90, right: 90, top: 90, bottom: 90 };

export interface PlacedNode {
  readonly node: GraphNode;
  readonly column: number;
  readonly x: number;
  readonly y: number;
}

export interface Layout {
  readonly nodes: ReadonlyMap<string, PlacedNode>;
  readonly width: number;
  readonly height: number;
}

const byId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Columns by longest path. Cycles (a calls b calls a) are broken where a depth-first walk from
 * the roots meets a node already on its path; that edge is drawn backwards instead of pushing
 * the columns out forever.
 */
export function columnsOf(ids: readonly string[], edges: readonly GraphEdge[]): Map<string, number> {
  const sorted = [...ids].sort(byId);
  const out = new Map<string, string[]>(sorted.map((id) => [id, []]));
  const hasIncoming = new Set<string>();
  for (const e of edges) {
    if (e.source === e.target || !out.has(e.source) || !out.has(e.target)) continue;
    out.get(e.source)!.push(e.target);
    hasIncoming.add(e.target);
  }
  for (const targets of out.values()) targets.sort(byId);

  // Depth-first post-order over the forward edges gives a topological order of the acyclic part.
  const state = new Map<string, 'open' | 'done'>();
  const forward = new Map<string, string[]>(sorted.map((id) => [id, []]));
  const postOrder: string[] = [];
  const visit = (id: string): void => {
    state.set(id, 'open');
    for (const target of out.get(id)!) {
      const seen = state.get(target);
      if (seen === 'open') continue; // a back edge: closes a cycle
      forward.get(id)!.push(target);
      if (seen === undefined) visit(target);
    }
    state.set(id, 'done');
    postOrder.push(id);
  };
  const roots = sorted.filter((id) => !hasIncoming.has(id));
  for (const id of [...roots, ...sorted]) if (!state.has(id)) visit(id);

  const column = new Map<string, number>(sorted.map((id) => [id, 0]));
  for (const id of postOrder.reverse())
    for (const target of forward.get(id)!) column.set(target, Math.max(column.get(target)!, column.get(id)! + 1));
  return column;
}

export function layoutGraph(nodes: readonly GraphNode[], edges: readonly GraphEdge[]): Layout {
  const columns = columnsOf(
    nodes.map((n) => n.id),
    edges,
  );
  const byColumn: GraphNode[][] = [];
  for (const node of [...nodes].sort((a, b) => byId(a.id, b.id))) {
    const c = columns.get(node.id) ?? 0;
    (byColumn[c] ??= []).push(node);
  }
  const tallest = Math.max(1, ...byColumn.map((col) => col?.length ?? 0));
  const placed = new Map<string, PlacedNode>();
  byColumn.forEach((col, c) => {
    // Centre each column vertically, so a simple chain is one straight line.
    const top = MARGIN.top + ((tallest - col.length) * ROW_GAP) / 2;
    col.forEach((node, row) => {
      placed.set(node.id, { node, column: c, x: MARGIN.left + c * COLUMN_GAP, y: top + row * ROW_GAP });
    });
  });
  return {
    nodes: placed,
    width: MARGIN.left + MARGIN.right + Math.max(0, byColumn.length - 1) * COLUMN_GAP,
    height: MARGIN.top + MARGIN.bottom + (tallest - 1) * ROW_GAP,
  };
}
