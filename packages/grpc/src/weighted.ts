import {
  type ChannelOptions,
  connectivityState as ConnectivityState,
  experimental,
  type StatusObject,
} from '@grpc/grpc-js';

type Endpoint = experimental.Endpoint;
type Picker = experimental.Picker;

/** Name of the weighted policy in a service config: `{ loadBalancingConfig: [{ rollcall_weighted: {} }] }`. */
export const WEIGHTED_POLICY = 'rollcall_weighted';

/**
 * Resolver attribute holding each endpoint's weight (`Map<endpointToString(endpoint), weight>`).
 * Keys under grpc-js's "no subchannel" prefix are not copied into subchannel arguments, so a new
 * weight map never forces new connections.
 */
export const WEIGHTS_ATTRIBUTE = `${experimental.SUBCHANNEL_ARGS_EXCLUDE_KEY_PREFIX ?? 'grpc.internal.no_subchannel'}.rollcall_weights`;

/** Endpoint weights as the resolver passes them to the policy. */
export type EndpointWeights = ReadonlyMap<string, number>;

class WeightedConfig implements experimental.TypedLoadBalancingConfig {
  getLoadBalancerName(): string {
    return WEIGHTED_POLICY;
  }
  toJsonObject(): object {
    return { [WEIGHTED_POLICY]: {} };
  }
  static createFromJson(json: unknown): WeightedConfig {
    if (json !== undefined && (typeof json !== 'object' || json === null || Array.isArray(json)))
      throw new Error(`${WEIGHTED_POLICY} config must be an object`);
    return new WeightedConfig();
  }
}

interface WeightedChild {
  picker: Picker;
  weight: number;
}

/**
 * Smooth weighted round robin (as nginx does it): each pick adds every child's weight to its
 * credit and takes the child with the most credit, which then pays the total. Weights 1:3 give
 * the exact sequence B B A B, spread out rather than bursty.
 */
class SmoothWeightedPicker implements Picker {
  private readonly credit: number[];
  private readonly total: number;

  constructor(private readonly children: readonly WeightedChild[]) {
    this.credit = children.map(() => 0);
    this.total = children.reduce((sum, c) => sum + c.weight, 0);
  }

  pick(args: experimental.PickArgs): experimental.PickResult {
    let best = 0;
    for (let i = 0; i < this.children.length; i++) {
      this.credit[i]! += this.children[i]!.weight;
      if (this.credit[i]! > this.credit[best]!) best = i;
    }
    this.credit[best]! -= this.total;
    return this.children[best]!.picker.pick(args);
  }
}

interface Child {
  readonly leaf: experimental.LeafLoadBalancer;
  weight: number;
}

/**
 * `rollcall_weighted`: like `round_robin` (one connection per endpoint, all kept connected, calls
 * spread over the READY ones) but each endpoint gets calls in proportion to its registry weight.
 * Endpoints that stay in the list keep their connection and state across updates.
 */
class WeightedLoadBalancer implements experimental.LoadBalancer {
  private children = new Map<string, Child>();
  private state = ConnectivityState.IDLE;
  private lastError: string | null = null;
  private updatesPaused = false;
  private readonly childHelper: experimental.ChannelControlHelper;

  constructor(private readonly helper: experimental.ChannelControlHelper) {
    this.childHelper = experimental.createChildChannelControlHelper(helper, {
      updateState: (state, _picker, errorMessage) => {
        // A connection that dropped may mean the list moved on: ask (the resolver rate-limits).
        if (this.state === ConnectivityState.READY && state !== ConnectivityState.READY)
          this.helper.requestReresolution();
        if (errorMessage) this.lastError = errorMessage;
        this.refresh();
      },
    });
  }

  updateAddressList(
    endpoints: experimental.StatusOr<Endpoint[]>,
    config: experimental.TypedLoadBalancingConfig,
    options: ChannelOptions,
    resolutionNote: string,
  ): boolean {
    if (!(config instanceof WeightedConfig)) return false;
    if (!endpoints.ok) {
      if (this.children.size === 0) this.fail(endpoints.error);
      return true;
    }
    const weights = options[WEIGHTS_ATTRIBUTE] as EndpointWeights | undefined;
    const next = new Map<string, Child>();
    const fresh: Child[] = [];
    for (const endpoint of endpoints.value) {
      const key = experimental.endpointToString(endpoint);
      const weight = weights?.get(key) ?? 1;
      const kept = this.children.get(key) ?? next.get(key);
      if (kept) {
        kept.weight = weight;
        next.set(key, kept);
        this.children.delete(key);
        continue;
      }
      const child = {
        leaf: new experimental.LeafLoadBalancer(endpoint, this.childHelper, options, resolutionNote),
        weight,
      };
      next.set(key, child);
      fresh.push(child);
    }
    for (const gone of this.children.values()) gone.leaf.destroy();
    this.children = next;
    if (next.size === 0) {
      this.fail({ details: `No addresses resolved. Resolution note: ${resolutionNote}` });
      return true;
    }
    this.updatesPaused = true;
    for (const child of fresh) child.leaf.startConnecting();
    this.updatesPaused = false;
    this.refresh();
    return true;
  }

  exitIdle(): void {
    for (const child of this.children.values())
      if (child.leaf.getConnectivityState() === ConnectivityState.IDLE) child.leaf.exitIdle();
  }

  resetBackoff(): void {
    // Connection backoff lives in the shared subchannels; nothing of our own to reset.
  }

  destroy(): void {
    for (const child of this.children.values()) child.leaf.destroy();
    this.children.clear();
  }

  getTypeName(): string {
    return WEIGHTED_POLICY;
  }

  private refresh(): void {
    if (this.updatesPaused) return;
    const all = [...this.children.values()];
    const inState = (state: ConnectivityState) => all.filter((c) => c.leaf.getConnectivityState() === state);
    const ready = inState(ConnectivityState.READY);
    if (ready.length > 0) {
      this.publish(
        ConnectivityState.READY,
        new SmoothWeightedPicker(ready.map((c) => ({ picker: c.leaf.getPicker(), weight: c.weight }))),
        null,
      );
    } else if (inState(ConnectivityState.CONNECTING).length > 0) {
      this.publish(ConnectivityState.CONNECTING, new experimental.QueuePicker(this), null);
    } else if (inState(ConnectivityState.TRANSIENT_FAILURE).length > 0) {
      this.fail({ details: `${WEIGHTED_POLICY}: No connection established. Last error: ${this.lastError}` });
    } else {
      this.publish(ConnectivityState.IDLE, new experimental.QueuePicker(this), null);
    }
    // Like round_robin, keep every endpoint connected.
    for (const child of all)
      if (child.leaf.getConnectivityState() === ConnectivityState.IDLE) child.leaf.exitIdle();
  }

  private fail(status: Partial<StatusObject>): void {
    this.publish(
      ConnectivityState.TRANSIENT_FAILURE,
      new experimental.UnavailablePicker(status),
      status.details ?? null,
    );
  }

  private publish(state: ConnectivityState, picker: Picker, errorMessage: string | null): void {
    this.state = state;
    this.helper.updateState(state, picker, errorMessage);
  }
}

/** Registers `rollcall_weighted` with grpc-js once per process (later calls do nothing). */
export function registerWeightedPolicy(): void {
  if (experimental.isLoadBalancerNameRegistered(WEIGHTED_POLICY)) return;
  experimental.registerLoadBalancerType(WEIGHTED_POLICY, WeightedLoadBalancer, WeightedConfig);
}
