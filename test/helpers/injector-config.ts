// The injector settings the injector's tests share (an install's, with a test image).
import type { InjectorConfig } from '../../src/control/injector/proxy-containers.ts';

export const TEST_INJECTOR_CONFIG: InjectorConfig = {
  proxyImage: 'localhost/trellis:test',
  controlPlaneAddress: 'trellis-control.trellis.svc.cluster.local:8086',
  trustDomain: 'cluster.local',
  proxyLogLevel: 'info',
  defaultInboundPolicy: 'all-unauthenticated',
  nativeSidecar: true,
  cni: false,
  controlPlaneNamespace: 'trellis',
  traceCollector: '',
  traceSampleRatio: '0',
};
