// Istio-style analysis messages, with the codes istioctl analyze uses where one fits,
// and TRL codes for what only Trellis checks.
import type { ResourceKey } from '../config/diagnostic.js';
import type { AnalysisLevel, AnalysisMessage } from './mesh-model.js';

export const ANALYSIS_CODES = {
  ReferencedResourceNotFound: { code: 'IST0101', level: 'Error' },
  ConflictingMeshGatewayVirtualServiceHosts: { code: 'IST0109', level: 'Error' },
  VirtualServiceDestinationPortSelectorRequired: { code: 'IST0112', level: 'Error' },
  PortNameIsNotUnderNamingConvention: { code: 'IST0118', level: 'Info' },
  DestinationRuleSubsetNotSelectPods: { code: 'IST0173', level: 'Warning' },
  UnknownNode: { code: 'TRL0001', level: 'Error' },
  L7PolicyWithoutWaypoint: { code: 'TRL0002', level: 'Warning' },
  SelectorMatchesNothing: { code: 'TRL0003', level: 'Info' },
  MultipleMeshes: { code: 'TRL0004', level: 'Error' },
  WorkloadPlacedTwice: { code: 'TRL0005', level: 'Error' },
  ConflictingDestinationRules: { code: 'TRL0006', level: 'Warning' },
  IgnoredPolicy: { code: 'TRL0007', level: 'Warning' },
  UpstreamServiceNotFound: { code: 'TRL0008', level: 'Warning' },
  UpstreamPortConflict: { code: 'TRL0009', level: 'Error' },
  UnsupportedRouteFeature: { code: 'TRL0010', level: 'Warning' },
  UnsupportedProbe: { code: 'TRL0011', level: 'Warning' },
  ExternalAuthorizationUnavailable: { code: 'TRL0012', level: 'Warning' },
} as const satisfies Record<string, { code: string; level: AnalysisLevel }>;

export type AnalysisName = keyof typeof ANALYSIS_CODES;

export class AnalysisSink {
  readonly messages: AnalysisMessage[] = [];

  add(name: AnalysisName, resource: ResourceKey, message: string, field?: string): void {
    const { code, level } = ANALYSIS_CODES[name];
    const m: AnalysisMessage =
      field === undefined ? { code, name, level, resource, message } : { code, name, level, resource, field, message };
    this.messages.push(m);
  }

  /** A Gateway API condition that is not healthy, reported with its upstream reason as the code. */
  condition(
    c: { readonly type: string; readonly status: 'True' | 'False' | 'Unknown'; readonly reason: string },
    resource: ResourceKey,
    message: string,
    field?: string,
    level: AnalysisLevel = 'Error',
  ): void {
    const m: AnalysisMessage = { code: c.reason, name: c.type, status: c.status, level, resource, message };
    this.messages.push(field === undefined ? m : { ...m, field });
  }
}
