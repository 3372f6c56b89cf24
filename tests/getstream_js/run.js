// Drives the official `getstream` npm client, unmodified, against a feedserver.
// Usage: node run.js <scenario> <json config>; prints one JSON document (the results) on stdout.
// The pytest side (tests/test_getstream_js.py) checks every value; this script only records them.
'use strict';
const stream = require('getstream');

const cfg = JSON.parse(process.argv[3] || '{}');
const options = { urlOverride: { api: `${cfg.base}/api/` }, fayeUrl: `${cfg.base}/faye`, timeout: 5000 };

function client(secretOrToken = cfg.secret, key = cfg.key) {
  return stream.connect(key, secretOrToken, cfg.appId, options);
}

// An error as the tests look at it: the client's error class and GetStream's error body.
function failure(err) {
  return { error: err.constructor.name, status: err.response ? err.response.status : null, body: err.error || null };
}

async function attempt(fn) {
  try {
    return { ok: await fn() };
  } catch (err) {
    return failure(err);
  }
}

async function flat() {
  const c = client();
  const user = cfg.user;
  const feed = c.feed('user', user);
  const out = {};
  const now = new Date().toISOString();
  out.addActivity = await feed.addActivity({ actor: user, verb: 'tweet', object: 1, foreign_id: 'tweet:1', time: now });
  out.addActivities = await feed.addActivities([
    { actor: user, verb: 'like', object: 'a' },
    { actor: user, verb: 'like', object: 'b' },
  ]);
  out.get = await feed.get({ limit: 2 });
  out.getOffset = await feed.get({ limit: 1, offset: 1 });
  const newest = out.get.results[0].id;
  out.getIdLt = await feed.get({ limit: 5, id_lt: newest });
  out.getActivityDetail = await feed.getActivityDetail(out.addActivity.id);
  out.getEnrich = await feed.get({ limit: 1, enrich: true });
  out.getActivitiesIds = await c.getActivities({ ids: [out.addActivity.id, '01J00000000000000000000000'] });
  out.getActivitiesForeign = await c.getActivities({
    foreignIDTimes: [{ foreignID: 'tweet:1', time: out.addActivity.time }],
  });
  out.activityPartialUpdate = await c.activityPartialUpdate({
    id: out.addActivity.id,
    set: { 'product.price': 20, color: 'blue' },
    unset: [],
  });
  out.activitiesPartialUpdate = await c.activitiesPartialUpdate([
    { foreign_id: 'tweet:1', time: out.addActivity.time, set: { color: 'red' }, unset: ['product'] },
  ]);
  out.updateActivity = await c.updateActivity({
    actor: user, verb: 'tweet', object: 'edited', foreign_id: 'tweet:1', time: out.addActivity.time, extra: 1,
  });
  out.updateActivitiesCreate = await c.updateActivities([
    { actor: user, verb: 'tweet', object: 'new', foreign_id: 'tweet:created', time: now },
  ]);
  out.afterUpdate = await c.getActivities({ ids: [out.addActivity.id] });
  out.createdByUpdate = await c.getActivities({ foreignIDTimes: [{ foreign_id: 'tweet:created', time: now }] });
  out.addToMany = await c.addToMany({ actor: user, verb: 'share', object: 'x', foreign_id: 'share:1', time: now }, [
    `timeline:${user}`,
    `flat:${user}`,
  ]);
  out.timeline = await c.feed('timeline', user).get();
  const targeted = await feed.addActivity({
    actor: user, verb: 'mention', object: 'y', foreign_id: 'mention:1', time: now, to: [`notification:${user}-friend`],
  });
  out.addWithTo = targeted;
  out.targetFeed = await c.feed('notification', `${user}-friend`).get();
  out.updateActivityToTargets = await feed.updateActivityToTargets('mention:1', now, undefined, [`flat:${user}-t`], [
    `notification:${user}-friend`,
  ]);
  out.targetFeedAfter = await c.feed('notification', `${user}-friend`).get();
  out.removeActivity = await feed.removeActivity(out.addActivity.id);
  out.removeUnknown = await feed.removeActivity('01J00000000000000000000000');
  out.removeForeign = await feed.removeActivity({ foreignId: 'mention:1' });
  out.afterRemove = await feed.get({ limit: 10 });
  return out;
}

async function errors() {
  const out = {};
  const feed = client().feed('user', cfg.user);
  out.wrongKey = await attempt(() => client(cfg.secret, 'not-the-key').feed('user', cfg.user).get());
  out.wrongSecret = await attempt(() => client('another-secret-entirely').feed('user', cfg.user).get());
  const readOnly = client().getReadOnlyToken('user', cfg.user);
  out.readOnlyWrite = await attempt(() =>
    client().feed('user', cfg.user, readOnly).addActivity({ actor: 'a', verb: 'v', object: 'o' }),
  );
  out.readOnlyRead = await attempt(() => client().feed('user', cfg.user, readOnly).get());
  out.missingObject = await attempt(() => feed.addActivity({ actor: 'a', verb: 'v' }));
  out.updateNoForeignId = await attempt(() =>
    client().updateActivity({ actor: 'a', verb: 'v', object: 'o', time: new Date().toISOString() }),
  );
  out.updateBadTime = await attempt(() =>
    client().updateActivity({ actor: 'a', verb: 'v', object: 'o', foreign_id: 'f:1', time: 'not a time' }),
  );
  const time = new Date().toISOString();
  await feed.addActivity({ actor: 'a', verb: 'v', object: 'o', foreign_id: 'to:1', time, to: ['flat:x'] });
  out.updateChangesTo = await attempt(() =>
    client().updateActivity({ actor: 'a', verb: 'v', object: 'o', foreign_id: 'to:1', time, to: ['flat:y'] }),
  );
  out.toNotAList = await attempt(() => feed.addActivity({ actor: 'a', verb: 'v', object: 'o', to: 'flat:x' }));
  const userToken = client().createUserToken(cfg.user);
  const asUser = client(userToken);
  out.userOwnFeed = await attempt(() => asUser.feed('user', cfg.user).addActivity({ verb: 'v', object: 'o' }));
  out.userOtherFeed = await attempt(() => asUser.feed('user', 'someone-else').get());
  out.userOtherActor = await attempt(() =>
    asUser.feed('user', cfg.user).addActivity({ actor: 'someone-else', verb: 'v', object: 'o' }),
  );
  out.userToUserFeed = await attempt(() =>
    asUser.feed('user', cfg.user).addActivity({ verb: 'v', object: 'o', to: ['user:someone-else'] }),
  );
  out.userToNotification = await attempt(() =>
    asUser.feed('user', cfg.user).addActivity({ verb: 'v', object: 'o', to: ['notification:someone-else'] }),
  );
  out.userReadOwn = await attempt(() => asUser.feed('user', cfg.user).get({ limit: 3 }));
  return out;
}

// Subscribes as described by cfg.subscriptions ([{label, slug, id, token?: "user"|"other-secret"}]),
// prints {"ready": true} on its own line, then collects messages until cfg.expect[label] counts are
// reached (or cfg.wait ms pass) and prints them.
async function subscribe() {
  const received = {};
  const status = {};
  const clients = [];
  for (const sub of cfg.subscriptions) {
    // shared: this feed lives on the first subscription's client (one faye client, one clientId);
    // feedToken: the token given to client.feed() (e.g. one for another feed, signed elsewhere).
    let c;
    if (sub.shared) c = clients[0];
    else if (sub.token === 'user') c = client(client().createUserToken(sub.id));
    else if (sub.token === 'other-secret') c = client('another-secret-entirely');
    else c = client();
    if (sub.noWebsocket) c.getFayeClient().disable('websocket');
    if (!sub.shared) clients.push(c);
    received[sub.label] = [];
    const feed = sub.feedToken ? c.feed(sub.slug, sub.id, sub.feedToken) : c.feed(sub.slug, sub.id);
    try {
      await feed.subscribe((msg) => received[sub.label].push(msg));
      status[sub.label] = 'subscribed';
    } catch (err) {
      status[sub.label] = { error: String(err && (err.message || err)) };
    }
  }
  process.stdout.write(JSON.stringify({ ready: true, status }) + '\n');
  const deadline = Date.now() + (cfg.wait || 8000);
  const done = () => Object.entries(cfg.expect || {}).every(([label, n]) => received[label].length >= n);
  while (Date.now() < deadline && !done()) await new Promise((r) => setTimeout(r, 50));
  if (cfg.settle) await new Promise((r) => setTimeout(r, cfg.settle));
  for (const c of clients) if (c.fayeClient) c.fayeClient.disconnect();
  return { status, received };
}

// feed.subscribe, one message, feed.unsubscribe(); prints {"ready"}, then {"unsubscribed"}, then
// everything received within cfg.wait ms.
async function unsubscribe() {
  const c = client();
  const feed = c.feed('user', cfg.user);
  const received = [];
  await feed.subscribe((msg) => received.push(msg));
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  while (received.length < 1) await new Promise((r) => setTimeout(r, 20));
  feed.unsubscribe();
  await new Promise((r) => setTimeout(r, 300)); // let the /meta/unsubscribe reach the server
  process.stdout.write(JSON.stringify({ unsubscribed: true }) + '\n');
  await new Promise((r) => setTimeout(r, cfg.wait || 1500));
  c.fayeClient.disconnect();
  return { received };
}

const scenarios = { flat, errors, subscribe, unsubscribe };
scenarios[process.argv[2]]()
  .then((out) => {
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(0);
  })
  .catch((err) => {
    process.stdout.write(JSON.stringify({ crashed: failure(err), message: String(err && err.stack) }) + '\n');
    process.exit(1);
  });
