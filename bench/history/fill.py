#!/usr/bin/env python3
"""Fills General with MESSAGES messages, straight into a stopped server's store
(far faster than sending them), for the history bench.

    fill.py sqlite DATA_DIR MESSAGES
    fill.py postgres DATABASE_URL MESSAGES
"""
import subprocess
import sys

kind, where, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "sqlite":
    import sqlite3
    db = sqlite3.connect(f"{where}/hearth.db")
    db.executemany(
        "INSERT INTO log (channel, seq, author, text, sent_at, client_id) VALUES ('general', ?, 'Bench', ?, 0, ?)",
        ((i, f"message {i}", f"b{i}") for i in range(1, count + 1)),
    )
    db.execute("UPDATE channels SET last_seq = ? WHERE key = 'general'", (count,))
    db.commit()
else:
    statements = [
        "INSERT INTO messages (channel, seq, author, text, sent_at, client_id) "
        f"SELECT 'general', g, 'Bench', 'message ' || g, 0, 'b' || g FROM generate_series(1, {count}) g",
        f"UPDATE channels SET last_seq = {count} WHERE key = 'general'",
        "VACUUM ANALYZE messages",
    ]
    command = ["psql", "-q", "-d", where,
               "-v", "ON_ERROR_STOP=1"]
    for statement in statements:
        command += ["-c", statement]
    subprocess.run(command, check=True)
