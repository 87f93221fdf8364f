// Crash-safe file writes: data goes to a temp file in the same directory, is fsynced, then renamed
// over the target, and the directory is fsynced so the rename itself is durable.
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
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

/** A commit journal: once it is durable the set of files is decided, and recoverCommit() finishes it. */
interface Journal {
  save_id?: string;
  /** [temp file name, final file name] pairs, both in the directory. */
  renames: [string, string][];
  /** Files of the previous save that the new one no longer has (removed after the renames). */
  removes?: string[];
}

/**
 * Completes a multi-file commit that was interrupted after its journal was written (renames whose temp
 * file is still there, then removals), then deletes the journal. With `cleanTemps`, also deletes temp
 * files of `names` left by commits interrupted before their journal (only a writer should do that).
 */
export async function recoverCommit(
  dir: string,
  journalName: string,
  cleanTemps: readonly string[] | null,
): Promise<void> {
  const journalPath = join(dir, journalName);
  let journal: Journal | null = null;
  try {
    journal = JSON.parse(await readFile(journalPath, 'utf8')) as Journal;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new Error(`${dir}: unreadable commit journal ${journalName} (${(e as Error).message})`, { cause: e });
  }
  if (journal) {
    for (const [tmp, final] of journal.renames) {
      await rename(join(dir, tmp), join(dir, final)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e; // already renamed
      });
    }
    for (const name of journal.removes ?? []) await unlink(join(dir, name)).catch(() => {});
    await fsyncDir(dir);
    await unlink(journalPath).catch(() => {});
    await fsyncDir(dir);
  }
  if (cleanTemps) {
    const ours = [...cleanTemps, journalName].map((f) => `.${f}${TEMP_MARK}`);
    for (const name of await readdir(dir)) {
      if (ours.some((prefix) => name.startsWith(prefix))) await unlink(join(dir, name)).catch(() => {});
    }
  }
}

/**
 * Writes a set of files into `dir` all-or-nothing: each is staged as a fsynced temp file, then a journal
 * is written, the files are renamed into place and `removes` deleted, and the journal is removed. A
 * crash before the journal leaves the previous files untouched; after it, recoverCommit() rolls forward.
 * The caller runs recoverCommit(dir, journalName, …) before staging.
 */
export async function commitFiles(
  dir: string,
  journalName: string,
  files: readonly [string, readonly Uint8Array[]][],
  opts: { saveId?: string; removes?: string[] } = {},
): Promise<void> {
  const renames: [string, string][] = [];
  try {
    for (const [name, chunks] of files) {
      const tmp = tempPathFor(join(dir, name));
      await writeDurable(tmp, chunks);
      renames.push([basename(tmp), name]);
    }
  } catch (e) {
    await Promise.all(renames.map(([tmp]) => unlink(join(dir, tmp)).catch(() => {})));
    throw e;
  }
  await fsyncDir(dir);
  const journal: Journal = {
    ...(opts.saveId ? { save_id: opts.saveId } : {}),
    renames,
    ...(opts.removes?.length ? { removes: opts.removes } : {}),
  };
  await writeFileAtomic(join(dir, journalName), [Buffer.from(JSON.stringify(journal, null, 2) + '\n', 'utf8')]);
  for (const [tmp, final] of renames) await rename(join(dir, tmp), join(dir, final));
  for (const name of opts.removes ?? []) await unlink(join(dir, name)).catch(() => {});
  await fsyncDir(dir);
  await unlink(join(dir, journalName));
  await fsyncDir(dir);
}
