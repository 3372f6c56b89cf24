// Peer: Node socket.io + @socket.io/redis-adapter.
//
// The minimal equivalent of "one room, N subscribers, publish through Redis":
//  - a client joins a room with the acknowledged event "subscribe" (payload: the room name);
//  - a "publish" event {feed, activity} is emitted to room `feed` as "activity".
//
// The redis adapter delivers an emit to *local* sockets directly and only sends it through Redis
// to *other* processes. So that this peer's deliveries travel through Redis like everyone else's,
// the harness runs two instances: subscribers on one (PORT), the publisher on the other, and the
// emit reaches the subscribers' instance via Redis pub/sub.
//
// Run: REDIS_URL=redis://127.0.0.1:6379/0 node server.js --port 9000
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const portArg = process.argv.indexOf("--port");
const PORT = Number(portArg >= 0 ? process.argv[portArg + 1] : process.env.PORT || 9000);
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379/0";

async function main() {
  const pubClient = createClient({ url: REDIS_URL });
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    adapter: createAdapter(pubClient, subClient, { key: "bench-socketio-node" }),
    transports: ["websocket"],
    perMessageDeflate: false,
    pingInterval: 60000,
    pingTimeout: 60000,
    cors: { origin: "*" },
  });

  io.on("connection", (socket) => {
    socket.on("subscribe", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack("ok");
    });
    socket.on("publish", (data) => {
      io.to(data.feed).emit("activity", data);
    });
  });

  httpServer.listen(PORT, "127.0.0.1", 4096, () => {
    console.log(`socket.io peer listening on ${PORT}`);
  });

  const stop = () => {
    io.close();
    Promise.allSettled([pubClient.quit(), subClient.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
