import { type Backend, ConflictError } from '@rollcall/core';
import { createMemoryBackend } from '@rollcall/memory';
import { eventually, uniqueService } from '@rollcall/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { BRIDGE_META, type BridgeEvent, startBridge } from '../src/index.js';
import { MemoryPair } from './harness.js';

// The bridge against the liveness engine's conflict rule (an id held by one live client at a time;
// at the same address a newer registration takes over, at another it is refused), memory -> memory.
const pairs: MemoryPair[] = [];
const clients: Backend[] = [];
afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  for (const p of pairs.splice(0)) p.dispose();
});

/** A client of `to` that checks its registrations every 100 ms (an overtaken copy is noticed at once). */
function setup() {
  const pair = new MemoryPair();
  pairs.push(pair);
  const client = (side: 'from' | 'to'): Backend => {
    const c = createMemoryBackend({ store: pair.store(side), reconcileIntervalMs: 100 });
    clients.push(c);
    return c;
  };
  return { pair, client };
}

/** A bridge of `service` from `from` to `to` with no settle delay, and the events it reports. */
function bridgeOf(client: (side: 'from' | 'to') => Backend, service: string) {
  const events: BridgeEvent[] = [];
  const bridge = startBridge({
    from: client('from'),
    to: client('to'),
    services: [service],
    settleMs: 0,
    onEvent: (e) => events.push(e),
  });
  return { bridge, events };
}

describe('bridge: an id taken by a Rollcall client', () => {
  it('at the source address: the client keeps it, the copy is given up and never comes back', async () => {
    const { client } = setup();
    const service = uniqueService('taken');
    const address = { service, id: 'x', host: '10.0.0.1', port: 80 };
    // Registered in `from` by something that is not a Rollcall client of `to` (another language).
    await client('from').discovery.register(address, { ttlSeconds: 30 });
    const { bridge, events } = bridgeOf(client, service);
    const reader = client('to');
    const inTo = async () => (await reader.discovery.getInstances(service)).instances;
    await eventually(async () => (await inTo()).some((i) => i.metadata?.[BRIDGE_META] === bridge.id));

    // The process itself now registers through Rollcall (ported, or restarted): same id, same address.
    const registration = await client('to').discovery.register(address);
    const lost: unknown[] = [];
    registration.on('lost', (e) => lost.push(e));
    await eventually(() => events.some((e) => e.type === 'skipped' && e.id === 'x'));
    expect(bridge.copies()).toEqual([]);
    expect(await inTo()).toEqual([address]);

    // Gone from `to` while its source lasts: an abandoned copy still registered would be written
    // back within one 100 ms check once the id is free; a fresh copy would follow within settleMs.
    await registration.deregister();
    await new Promise((r) => setTimeout(r, 600));
    expect(await inTo()).toEqual([]);
    expect(bridge.copies()).toEqual([]);
    expect(lost).toEqual([]);
    await bridge.stop();
  });

  it('at another address: the client is refused with a ConflictError; the copy stays', async () => {
    const { client } = setup();
    const service = uniqueService('clash');
    await client('from').discovery.register(
      { service, id: 'x', host: '10.0.0.1', port: 80 },
      { ttlSeconds: 30 },
    );
    const bridge = startBridge({ from: client('from'), to: client('to'), services: [service], settleMs: 0 });
    await eventually(() => bridge.copies().length === 1);
    const refused = await client('to')
      .discovery.register({ service, id: 'x', host: '10.0.0.2', port: 80 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConflictError);
    expect(bridge.copies().map((i) => i.id)).toEqual(['x']);
    await bridge.stop();
  });
});

describe('bridge: a source the copy cannot hold', () => {
  it('a source with more than 58 metadata entries (the copy adds 2, core allows 60) is skipped, not copied', async () => {
    const { client } = setup();
    const service = uniqueService('wide');
    const metadata = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    await client('from').discovery.register(
      { service, id: 'fits', host: '10.0.0.1', port: 80, metadata: metadata(58) },
      { ttlSeconds: 30 },
    );
    await client('from').discovery.register(
      { service, id: 'wide', host: '10.0.0.2', port: 80, metadata: metadata(59) },
      { ttlSeconds: 30 },
    );
    const { bridge, events } = bridgeOf(client, service);
    await eventually(() => events.some((e) => e.type === 'skipped' && e.id === 'wide'));
    await eventually(() => bridge.copies().length === 1);
    expect(bridge.copies().map((i) => i.id)).toEqual(['fits']);
    const inTo = (await client('to').discovery.getInstances(service)).instances;
    expect(inTo.map((i) => i.id)).toEqual(['fits']);
    await bridge.stop();
  });
});
