// Prints the closing line CI reads, from vitest's JSON report. The report holds one entry per test file
// and project (vitest.config.ts: 'default' and 'hardware-profile'), and its counts cover every project,
// so a test that runs under both profiles counts twice. Failing tests are listed first.
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const failedSuites = r.testResults.filter((s) => s.status === 'failed' && s.assertionResults.length === 0);
for (const s of failedSuites) console.log(`failed to run: ${s.name}: ${s.message}`);
for (const s of r.testResults)
  for (const t of s.assertionResults) if (t.status === 'failed') console.log(`failed: ${s.name} > ${t.fullName}`);
const passed = r.numPassedTests;
const failed = r.numFailedTests + failedSuites.length;
const skipped = r.numPendingTests + r.numTodoTests;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
