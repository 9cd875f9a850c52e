// The service graph as inline SVG: nodes by kind, edges as coloured arrows with their rates.
import type { GraphEdge, GraphNode, ServiceGraph } from '../observe/graph-types.js';
import { s } from './dom.js';
import { formatBytes, formatMs, formatNumber, formatPercent } from './format.js';
import { layoutGraph, type PlacedNode } from './graph-layout.js';

/** Radius of a node's shape: edges start and end this far from its centre. */
const NODE_RADIUS = 24;
/** How far a label sits off its edge, on the outside of the curve. */
const LABEL_OFFSET = 12;

type Health = 'ok' | 'warn' | 'bad' | 'idle' | 'denied';
const HEALTHS: readonly Health[] = ['ok', 'warn', 'bad', 'idle', 'denied'];

interface Point {
  readonly x: number;
  readonly y: number;
}

export function renderGraph(svg: SVGSVGElement, graph: ServiceGraph): void {
  const nodes = withEndpoints(graph.nodes, graph.edges);
  const layout = layoutGraph(nodes, graph.edges);
  svg.replaceChildren(arrowMarkers());
  svg.setAttribute('viewBox', `0 0 ${layout.width} ${layout.height}`);
  svg.setAttribute('width', String(layout.width));
  svg.setAttribute('height', String(layout.height));
  if (nodes.length === 0) {
    svg.append(s('text', { x: layout.width / 2, y: layout.height / 2, class: 'graph-empty' }, 'No traffic seen yet'));
    return;
  }
  // Nodes first: edge labels are drawn over anything they cross, never hidden under a node.
  const nodeLayer = s('g', { class: 'nodes' });
  for (const placed of layout.nodes.values()) nodeLayer.append(nodeView(placed));
  const edgeLayer = s('g', { class: 'edges' });
  const pairs = new Set(graph.edges.map((e) => `${e.source}\n${e.target}`));
  for (const edge of graph.edges) {
    const from = layout.nodes.get(edge.source);
    const to = layout.nodes.get(edge.target);
    const hasReverse = pairs.has(`${edge.target}\n${edge.source}`);
    if (from && to) edgeLayer.append(edgeView(edge, from, to, hasReverse, layout.height / 2));
  }
  svg.append(nodeLayer, edgeLayer);
  fitToContent(svg);
}

/** Arcs and labels reach past the node grid: size the picture to what was actually drawn. */
function fitToContent(svg: SVGSVGElement): void {
  const box = svg.getBBox();
  if (box.width === 0 || box.height === 0) return; // not rendered (hidden): keep the grid size
  const pad = 12;
  const width = Math.ceil(box.width + 2 * pad);
  const height = Math.ceil(box.height + 2 * pad);
  svg.setAttribute('viewBox', `${Math.floor(box.x - pad)} ${Math.floor(box.y - pad)} ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
}

const ID_PREFIX_KINDS: readonly (readonly [string, GraphNode['kind']])[] = [
  ['svc:', 'service'],
  ['wl:', 'workload'],
  ['gw:', 'gateway'],
];

/** An edge naming a node the answer left out still gets drawn, with a node guessed from its id. */
function withEndpoints(nodes: readonly GraphNode[], edges: readonly GraphEdge[]): GraphNode[] {
  const all = new Map(nodes.map((n) => [n.id, n]));
  for (const id of edges.flatMap((e) => [e.source, e.target]))
    if (!all.has(id)) {
      const kind = ID_PREFIX_KINDS.find(([prefix]) => id.startsWith(prefix))?.[1] ?? 'external';
      all.set(id, { id, kind, name: id.slice(id.lastIndexOf('/') + 1) });
    }
  return [...all.values()];
}

function arrowMarkers(): SVGDefsElement {
  const defs = s('defs');
  for (const health of HEALTHS)
    defs.append(
      s(
        'marker',
        {
          id: `arrow-${health}`,
          class: `arrow health-${health}`,
          viewBox: '0 0 10 10',
          refX: 9,
          refY: 5,
          markerWidth: 9,
          markerHeight: 9,
          markerUnits: 'userSpaceOnUse',
          orient: 'auto',
        },
        s('path', { d: 'M0,0 L10,5 L0,10 z' }),
      ),
    );
  return defs;
}

// ---- nodes ----

const KIND_GLYPH: Record<GraphNode['kind'], string> = {
  service: 'svc',
  workload: 'wl',
  gateway: 'gw',
  external: 'ext',
};

export function nodeShape(kind: GraphNode['kind'], x: number, y: number, r = NODE_RADIUS): SVGElement {
  switch (kind) {
    case 'service':
      return s('rect', { x: x - r, y: y - r * 0.8, width: 2 * r, height: 1.6 * r, rx: r * 0.4, class: 'shape' });
    case 'gateway':
      return s('polygon', { points: `${x},${y - r} ${x + r},${y} ${x},${y + r} ${x - r},${y}`, class: 'shape' });
    case 'workload':
    case 'external':
      return s('circle', { cx: x, cy: y, r: r * 0.9, class: 'shape' });
  }
}

function nodeView({ node, x, y }: PlacedNode): SVGGElement {
  const g = s(
    'g',
    { 'data-testid': 'node', 'data-id': node.id, 'data-kind': node.kind, class: `node kind-${node.kind}` },
    s('title', {}, node.id),
    nodeShape(node.kind, x, y),
    s('text', { x, y, class: 'glyph' }, KIND_GLYPH[node.kind]),
    s('text', { x, y: y + NODE_RADIUS + 16, class: 'node-name' }, node.name),
  );
  let below = y + NODE_RADIUS + 31;
  if (node.namespace) {
    g.append(s('text', { x, y: below, class: 'node-ns' }, node.namespace));
    below += 15;
  }
  if (node.waypoint) g.append(waypointBadge(x, below));
  return g;
}

function waypointBadge(x: number, y: number): SVGGElement {
  return s(
    'g',
    { class: 'waypoint-badge' },
    s('rect', { x: x - 29, y: y - 8, width: 58, height: 15, rx: 7.5 }),
    s('text', { x, y }, 'waypoint'),
  );
}

// ---- edges ----

export function edgeHealth(e: GraphEdge): Health {
  if (e.deniedRate > 0) return 'denied';
  if (e.rate === 0) return 'idle';
  if (e.errorRate < 0.01) return 'ok';
  if (e.errorRate < 0.05) return 'warn';
  return 'bad';
}

export function edgeLabel(e: GraphEdge): string {
  const traffic =
    e.protocol === 'http'
      ? `${formatNumber(e.rate)} rps · ${formatPercent(e.errorRate)} err · p99 ${formatMs(e.p99Ms)} ms`
      : `${formatNumber(e.rate)} conn/s · ${formatBytes(e.bytesRate)}/s`;
  return e.deniedRate > 0 ? `${formatNumber(e.deniedRate)} denied/s · ${traffic}` : traffic;
}

function edgeView(
  edge: GraphEdge,
  from: PlacedNode,
  to: PlacedNode,
  hasReverse: boolean,
  middleY: number,
): SVGGElement {
  const health = edgeHealth(edge);
  const geometry = edgeGeometry(from, to, hasReverse, middleY);
  const width = 1.5 + Math.min(2.5, Math.log10(1 + edge.rate));
  const g = s(
    'g',
    {
      'data-testid': 'edge',
      'data-source': edge.source,
      'data-target': edge.target,
      'data-protocol': edge.protocol,
      'data-mtls': edge.mtls,
      'data-denied': String(edge.deniedRate > 0),
      'data-rate': String(edge.rate),
      class: `edge health-${health}`,
    },
    s('title', {}, edgeTooltip(edge)),
    s('path', { d: geometry.path, class: 'edge-line', 'stroke-width': width, 'marker-end': `url(#arrow-${health})` }),
    s(
      'text',
      {
        'data-testid': 'edge-label',
        class: 'edge-label',
        x: geometry.label.x,
        y: geometry.label.y,
        transform: geometry.angle
          ? `rotate(${geometry.angle.toFixed(1)} ${geometry.label.x} ${geometry.label.y})`
          : undefined,
      },
      edgeLabel(edge),
    ),
  );
  const mark = mtlsMark(edge.mtls, geometry.mark);
  if (mark) g.append(mark);
  return g;
}

function edgeTooltip(e: GraphEdge): string {
  const mtls = { mutual_tls: 'mTLS', none: 'plaintext', mixed: 'mTLS and plaintext', unknown: 'unknown' }[e.mtls];
  return `${e.source} → ${e.target}\n${e.protocol.toUpperCase()}, ${formatNumber(e.total)} in the window, ${mtls}`;
}

interface EdgeGeometry {
  readonly path: string;
  /** Where the label goes (outside the curve) and where the mTLS mark goes (inside it). */
  readonly label: Point;
  /** Rotation of the label in degrees, so it follows a sloped edge. */
  readonly angle: number;
  readonly mark: Point;
}

/**
 * Neighbouring columns get a straight line. An edge skipping columns arcs around the nodes in
 * between, towards the outside of the graph (up from the upper half, down from the lower half)
 * so arcs do not cross the middle; a pair a->b, b->a bows apart so both stay readable.
 */
function edgeGeometry(from: PlacedNode, to: PlacedNode, hasReverse: boolean, middleY: number): EdgeGeometry {
  if (from === to) return selfLoop(from);
  const span = to.column - from.column;
  const height = span === 1 ? (hasReverse ? 22 : 0) : 50 + 20 * Math.max(1, Math.abs(span));
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  const length = Math.hypot(dx, dy);
  let normal = { x: dy / length, y: -dx / length }; // left of the direction of travel
  const lowerHalf = (from.y + to.y) / 2 > middleY;
  if (normal.y > 0 !== bendsDown(normal, height, hasReverse, lowerHalf)) normal = { x: -normal.x, y: -normal.y };
  const apex = { x: (from.x + to.x) / 2 + normal.x * height, y: (from.y + to.y) / 2 + normal.y * height };
  // A quadratic curve through `apex` at its middle has its control point twice as far out.
  const control = { x: 2 * apex.x - (from.x + to.x) / 2, y: 2 * apex.y - (from.y + to.y) / 2 };
  const start = towards(from, control, NODE_RADIUS + 2);
  const end = towards(to, control, NODE_RADIUS + 4);
  const path =
    height === 0
      ? `M${start.x},${start.y} L${end.x},${end.y}`
      : `M${start.x},${start.y} Q${control.x},${control.y} ${end.x},${end.y}`;
  // The label runs along the edge (the tangent at the apex is parallel to the chord), kept upright.
  let angle = (Math.atan2(dy, dx) * 180) / Math.PI;
  if (angle > 90) angle -= 180;
  if (angle < -90) angle += 180;
  return {
    path,
    label: { x: apex.x + normal.x * LABEL_OFFSET, y: apex.y + normal.y * LABEL_OFFSET },
    angle: Math.abs(angle) < 0.5 ? 0 : angle,
    mark: { x: apex.x - normal.x * (LABEL_OFFSET + 4), y: apex.y - normal.y * (LABEL_OFFSET + 4) },
  };
}

/** Whether an edge's label (and an arc's bulge) goes below it. */
function bendsDown(leftNormal: Point, height: number, hasReverse: boolean, lowerHalf: boolean): boolean {
  if (height === 0) return false; // a straight edge: label above the line
  // A reverse pair stays left of travel, so the two separate; so does an arc within a column.
  if (hasReverse || Math.abs(leftNormal.y) <= 0.3) return leftNormal.y > 0;
  return lowerHalf; // an arc over other nodes: towards the outside of the graph
}

function selfLoop({ x, y }: PlacedNode): EdgeGeometry {
  const top = y - NODE_RADIUS;
  return {
    path: `M${x - 12},${top} C${x - 40},${top - 60} ${x + 40},${top - 60} ${x + 12},${top + 2}`,
    label: { x, y: top - 58 },
    angle: 0,
    mark: { x: x + 40, y: top - 30 },
  };
}

/** The point `distance` from `p` on the way to `q`. */
function towards(p: Point, q: Point, distance: number): Point {
  const dx = q.x - p.x;
  const dy = q.y - p.y;
  const length = Math.hypot(dx, dy) || 1;
  return { x: p.x + (dx / length) * distance, y: p.y + (dy / length) * distance };
}

/** A closed padlock for mTLS, an open amber one for plaintext, "mixed" text; nothing when unknown. */
function mtlsMark(mtls: GraphEdge['mtls'], at: Point): SVGGElement | undefined {
  if (mtls === 'unknown') return undefined;
  const g = s('g', { class: `mtls mtls-${mtls}`, 'data-testid': 'edge-mtls' });
  if (mtls === 'mixed') {
    g.append(s('title', {}, 'some traffic mTLS, some plaintext'), s('text', { x: at.x, y: at.y }, 'mixed'));
    return g;
  }
  const locked = mtls === 'mutual_tls';
  const { x, y } = at;
  // The shackle: closed into the body, or swung open to the right.
  const shackle = locked
    ? `M${x - 3.5},${y - 1} v-3 a3.5,3.5 0 0 1 7,0 v3`
    : `M${x - 3.5},${y - 1} v-3 a3.5,3.5 0 0 1 7,0 v-1.5`;
  g.append(
    s('title', {}, locked ? 'mTLS' : 'plaintext (no mTLS)'),
    s('path', { d: shackle, class: 'shackle' }),
    s('rect', { x: x - 5.5, y: y - 1.5, width: 11, height: 8, rx: 1.5, class: 'lock-body' }),
  );
  if (!locked) g.append(s('text', { x: x + 9, y: y + 3, class: 'open-text' }, 'open'));
  return g;
}
