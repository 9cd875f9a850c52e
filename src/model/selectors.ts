// Label selector semantics (Kubernetes): matchLabels AND matchExpressions; empty selects all.
export interface SelectorLike {
  readonly matchLabels?: Readonly<Record<string, string>>;
  readonly matchExpressions?: readonly {
    readonly key: string;
    readonly operator: string;
    readonly values?: readonly string[];
  }[];
}

export type Labels = Readonly<Record<string, string>>;

/** Cilium writes label sources as prefixes ("k8s:app", "any:app"); the key is what follows. */
function labelKey(key: string): string {
  const m = /^(?:k8s|any|container|reserved|unspec):(.+)$/.exec(key);
  return m ? m[1]! : key;
}

export function matchesSelector(selector: SelectorLike | undefined, labels: Labels): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[labelKey(k)] !== v) return false;
  }
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, labelKey(e.key));
    const value = labels[labelKey(e.key)];
    switch (e.operator) {
      case 'In':
        if (!has || !(e.values ?? []).includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && (e.values ?? []).includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** Istio-style matchLabels only; an absent or empty selector selects every workload in scope. */
export function matchesLabels(match: Labels | undefined, labels: Labels): boolean {
  if (!match) return true;
  for (const [k, v] of Object.entries(match)) if (labels[k] !== v) return false;
  return true;
}

export function isEmptySelector(selector: SelectorLike | undefined): boolean {
  return (
    !selector ||
    (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0)
  );
}
