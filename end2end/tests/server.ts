import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';

/**
 * A Hearth server this test controls: it can be killed (as by a crash or power cut)
 * and started again on the same data directory and port.
 */
export class ControlledServer {
  private child: ChildProcess | null = null;
  readonly url: string;
  private readonly dataDir: string;

  /** `env` adds to or overrides the settings below. */
  constructor(
    private readonly port: number,
    private readonly env: Record<string, string> = {},
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.dataDir = path.resolve(__dirname, '..', '.data', String(port));
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  async start(): Promise<void> {
    const child = spawn(path.resolve(__dirname, '..', '..', 'target', 'release', 'hearth'), [], {
      env: {
        ...process.env,
        LEPTOS_SITE_ADDR: `127.0.0.1:${this.port}`,
        LEPTOS_SITE_ROOT: path.resolve(__dirname, '..', '..', 'target', 'site'),
        HEARTH_CONFIG: '/dev/null',
        HEARTH_DATA_DIR: this.dataDir,
        RUST_LOG: 'warn',
        HEARTH_CLAIMS_PER_MINUTE: '10000',
        HEARTH_API_PER_MINUTE: '10000',
        HEARTH_CHANNELS_PER_HOUR: '10000',
        HEARTH_ROOM_SEATS_PER_ADDRESS: '10000',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server did not start in 15 s')), 15_000);
      let seen = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes('hearth listening on')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code} before listening`));
      });
    });
  }

  /** Ends the process at once, without letting it flush or say goodbye. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    this.child = null;
  }
}
