/**
 * The keys of the members a `LocalBroker` and its consumers call on each other (reads,
 * wake-ups, group membership) and users never need. Module symbols instead of `_`-prefixed
 * names, as platformatic/kafka's `src/symbols.ts` does: `mod.ts` never exports this file, so
 * these members are out of the public type's reach, and `@ignore` keeps them out of the docs.
 * Tests that need one import it from here.
 *
 * @module
 */

// ---- LocalBroker's side ---------------------------------------------------------------

/** `broker[COOPERATIVE]`: whether groups rebalance cooperatively. */
export const COOPERATIVE: unique symbol = Symbol("sluice.local.cooperative");
/**
 * `broker[READ](partition, from, count, out, at)`: writes new `BrokerValue`s for stored
 * messages to `out`; returns the index after the last one written.
 */
export const READ: unique symbol = Symbol("sluice.local.read");
/** `broker[TOPIC](topic)`: the topic, or an `UnknownTopicError` when it does not exist. */
export const TOPIC: unique symbol = Symbol("sluice.local.topic");
/** `broker[CHANGED]()`: resolves on the next produce or membership change. */
export const CHANGED: unique symbol = Symbol("sluice.local.changed");
/** `broker[NOTIFY]()`: wakes whoever waits on `broker[CHANGED]()`. */
export const NOTIFY: unique symbol = Symbol("sluice.local.notify");
/** `broker[REBALANCE](group)`: starts a rebalance of the group. */
export const REBALANCE: unique symbol = Symbol("sluice.local.rebalance");
/** `broker[JOINED](group, memberId)`: a member finished revoking and rejoined. */
export const JOINED: unique symbol = Symbol("sluice.local.joined");
/** `broker[EXPIRE_IDLE](group)`: removes the group's members that stopped polling. */
export const EXPIRE_IDLE: unique symbol = Symbol("sluice.local.expireIdle");

// ---- LocalConsumer's side -------------------------------------------------------------

/** `consumer[TOPICS]`: the topics the member subscribed to. */
export const TOPICS: unique symbol = Symbol("sluice.local.topics");
/** `consumer[LAST_POLL]`: when the member last polled, on the broker's clock. */
export const LAST_POLL: unique symbol = Symbol("sluice.local.lastPoll");
/** `consumer[EXPIRE]()`: the group removed the member (session timeout). */
export const EXPIRE: unique symbol = Symbol("sluice.local.expire");
/** `consumer[ASSIGN](partitions, generation)`: the group assigned partitions (undefined: none yet). */
export const ASSIGN: unique symbol = Symbol("sluice.local.assign");
