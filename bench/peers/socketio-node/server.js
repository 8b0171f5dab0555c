// A minimal Socket.IO 4 chat server with rooms and broadcast-to-room, as a peer for
// Hearth's benchmarks. Listens on 127.0.0.1:$PORT.
const { createServer } = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 3500);
const http = createServer();
const io = new Server(http, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
});

io.on('connection', (socket) => {
  socket.on('join', (room) => {
    socket.join(String(room));
    socket.emit('joined', String(room));
  });
  socket.on('message', (message) => {
    if (message && typeof message.room === 'string' && typeof message.text === 'string') {
      io.to(message.room).emit('message', { room: message.room, text: message.text });
    }
  });
});

http.listen(port, '127.0.0.1', () => console.log(`socket.io peer listening on ${port}`));
