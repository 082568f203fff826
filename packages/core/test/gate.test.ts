import { describe, expect, it } from 'vitest';
import { AbortedError } from '../src/errors.js';
import { Gate } from '../src/gate.js';

describe('Gate (bounded turns: the Consul connection pools, the engine concurrent writes)', () => {
  it('lets at most size in, the others in arrival order; an aborted wait leaves the queue', async () => {
    const gate = new Gate(2);
    const order: string[] = [];
    const first = await gate.enter();
    const second = await gate.enter();
    const controller = new AbortController();
    const waits = ['a', 'b', 'c'].map((name) =>
      gate.enter(name === 'b' ? controller.signal : undefined).then((leave) => {
        order.push(name);
        return leave;
      }),
    );
    expect(gate.queued).toBe(3);
    controller.abort('gone');
    await expect(waits[1]).rejects.toBeInstanceOf(AbortedError);
    expect(gate.queued).toBe(2);
    first();
    first(); // leaving twice lets nobody else in
    const leaveA = await waits[0]!;
    expect(order).toEqual(['a']);
    second();
    const leaveC = await waits[2]!;
    expect(order).toEqual(['a', 'c']);
    leaveA();
    leaveC();
    // Empty again: two enter at once.
    await Promise.all([gate.enter(), gate.enter()]);
    expect(gate.queued).toBe(0);
    await expect(gate.enter(AbortSignal.abort())).rejects.toBeInstanceOf(AbortedError);
  });

  it('tryEnter enters only when there is room and nobody waits (never ahead of a waiter)', async () => {
    const gate = new Gate(1);
    const leave = gate.tryEnter();
    expect(leave).toBeTypeOf('function');
    expect(gate.tryEnter()).toBeUndefined();
    const waiting = gate.enter();
    expect(gate.queued).toBe(1);
    leave!();
    // The waiter was admitted when the holder left: the gate is full again, and tryEnter says so.
    const next = await waiting;
    expect(gate.tryEnter()).toBeUndefined();
    expect(gate.queued).toBe(0);
    next();
    const again = gate.tryEnter();
    expect(again).toBeTypeOf('function');
    again!();
  });
});
