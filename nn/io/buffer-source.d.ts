// typed-array-utils publishes its TypeScript source, which TypeScript then checks with this project's
// settings; it names the DOM's BufferSource, which Node's typings (no DOM lib here) do not declare.
type BufferSource = ArrayBufferView | ArrayBuffer;
