// Crash-safe file writes: data goes to a temp file in the same directory, is fsynced, then renamed
// over the target, and the directory is fsynced so the rename itself is durable.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const TEMP_MARK = '.tmp-';

/** A temp path next to `path` (same filesystem, so rename is atomic). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Writes the chunks to `path` and fsyncs it (not atomic by itself). */
export async function writeDurable(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (const c of chunks) {
      let done = 0;
      while (done < c.byteLength) {
        const { bytesWritten } = await fh.write(c, done, c.byteLength - done);
        done += bytesWritten;
      }
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces `path` with the chunks atomically: readers see the old file or the new one, never a mix. */
export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    await writeDurable(tmp, chunks);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fsyncDir(dirname(path));
}
