// Prints the closing line CI reads, from vitest's JSON report.
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const failedSuites = r.testResults.filter((s) => s.status === 'failed' && s.assertionResults.length === 0).length;
const passed = r.numPassedTests;
const failed = r.numFailedTests + failedSuites;
const skipped = r.numPendingTests + r.numTodoTests;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
