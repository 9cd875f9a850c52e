// The synthetic mesh the benchmarks load: per service a Service, a WorkloadEntry and a GAMMA
// HTTPRoute splitting traffic between the service and the next one of its namespace.

export interface MeshShape {
  readonly services: number;
  readonly namespaces: number;
}

export function perNamespace(shape: MeshShape): number {
  return Math.ceil(shape.services / shape.namespaces);
}

export function namespaceOf(shape: MeshShape, i: number): string {
  return `team-${Math.floor(i / perNamespace(shape))}`;
}

export function ipOf(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

/** The YAML of service i; `headerMatch` adds a second match on a header (bench:config). */
export function serviceFile(
  shape: MeshShape,
  i: number,
  opts: { ip?: string; weights?: readonly [number, number]; headerMatch?: boolean } = {},
): string {
  const per = perNamespace(shape);
  const n = Math.floor(i / per);
  const j = i % per;
  const ns = namespaceOf(shape, i);
  const [w1, w2] = opts.weights ?? [90, 10];
  const next = Math.min(shape.services - 1, n * per + ((j + 1) % per));
  const header = opts.headerMatch ? `\n        - headers:\n            - name: x-version\n              value: v1` : '';
  return `apiVersion: v1
kind: Service
metadata:
  name: svc-${i}
  namespace: ${ns}
spec:
  selector:
    app: svc-${i}
  ports:
    - name: http
      port: 8080
      targetPort: 9080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: svc-${i}-we
  namespace: ${ns}
spec:
  address: ${opts.ip ?? ipOf(i)}
  labels:
    app: svc-${i}
    version: v1
  serviceAccount: svc-${i}
  ports:
    http: 9080
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: svc-${i}-route
  namespace: ${ns}
spec:
  parentRefs:
    - group: ''
      kind: Service
      name: svc-${i}
      port: 8080
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /v1${header}
      backendRefs:
        - name: svc-${i}
          port: 8080
          weight: ${w1}
        - name: svc-${next}
          port: 8080
          weight: ${w2}
`;
}
