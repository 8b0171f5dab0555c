"""The original Hearth stack: a minimal Flask-SocketIO chat with rooms and
broadcast-to-room, served by gevent with WebSocket support (the fastest production
setup its documentation gives), as a peer for Hearth's benchmarks."""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from flask import Flask  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*", logger=False, engineio_logger=False)


@socketio.on("join")
def on_join(room):
    join_room(str(room))
    emit("joined", str(room))


@socketio.on("message")
def on_message(message):
    if isinstance(message, dict) and isinstance(message.get("room"), str) and isinstance(message.get("text"), str):
        emit("message", {"room": message["room"], "text": message["text"]}, to=message["room"])


if __name__ == "__main__":
    socketio.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3600")), log_output=False)
