// Counters behind memory(): buffers held by live storages, pool contents, and GPU traffic.
export const stats = {
  liveBuffers: 0,
  liveBytes: 0,
  peakBytes: 0,
  pooledBytes: 0,
  dispatches: 0,
  submits: 0,
  readbacks: 0,
  liveTensors: 0,
  /** Collections forced because live GPU bytes passed the threshold (core/reclaim.ts). */
  gcReclaims: 0,
};

export function trackAlloc(bytes: number): void {
  stats.liveBuffers++;
  stats.liveBytes += bytes;
  if (stats.liveBytes > stats.peakBytes) stats.peakBytes = stats.liveBytes;
}

export function trackFree(bytes: number): void {
  stats.liveBuffers--;
  stats.liveBytes -= bytes;
}

/** Restarts peak tracking from the current live bytes (e.g. before measuring one step). */
export function resetPeak(): void {
  stats.peakBytes = stats.liveBytes;
}

export interface MemoryStats {
  liveTensors: number;
  liveBuffers: number;
  liveBytes: number;
  peakBytes: number;
  pooledBytes: number;
  dispatches: number;
  submits: number;
  readbacks: number;
  gcReclaims: number;
}

/** A snapshot of the memory and GPU-traffic counters (all devices together). */
export function memory(): MemoryStats {
  return { ...stats };
}
