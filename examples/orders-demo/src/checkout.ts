import { createPicker, type Picker, type ServiceDiscovery } from '@rollcall/core';

/** What one call to the order service returned. */
export interface OrderReply {
  order: string;
  status: string;
  servedBy: string;
}

/**
 * The checkout client: finds order-service instances through discovery, balances calls
 * round robin, and retries a call on the next instance when one does not answer (an instance
 * that died is still listed until its TTL runs out).
 */
export class CheckoutClient implements Disposable {
  private readonly picker: Picker;

  constructor(
    discovery: ServiceDiscovery,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.picker = createPicker(discovery, 'orders', { strategy: 'round-robin' });
  }

  ready(): Promise<void> {
    return this.picker.ready();
  }

  /** Ids of the instances the client currently balances over. */
  instanceIds(): string[] {
    return this.picker.snapshot?.instances.map((i) => i.id) ?? [];
  }

  async getOrder(order: string): Promise<OrderReply> {
    const attempts = Math.max(1, this.picker.snapshot?.instances.length ?? 1);
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const instance = this.picker.pick();
      if (!instance) throw new Error('no order-service instance is registered');
      try {
        const res = await fetch(`http://${instance.host}:${instance.port}/orders/${order}`, {
          signal: AbortSignal.timeout(1000),
        });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        return (await res.json()) as OrderReply;
      } catch (error) {
        lastError = error;
        this.log(
          `  ${instance.id} did not answer (${(error as Error).cause ? ((error as Error).cause as Error).message : (error as Error).message}); trying the next instance`,
        );
      }
    }
    throw new Error(`every instance failed: ${(lastError as Error).message}`);
  }

  [Symbol.dispose](): void {
    this.picker.close();
  }
}
