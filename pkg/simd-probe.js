// Whether this browser runs relaxed SIMD, asked of a 70-byte module holding one
// `i32x4.relaxed_dot_i8x16_i7x16_add_s` (the instruction the relaxed build's kernels are made
// of): engines without it reject the module. A classic script with no exports, so that the
// worker can import it as a module and the service worker with importScripts.
self.candlelitRelaxedSimd = () => {
  const zeros = () => [0xfd, 0x0c, ...new Array(16).fill(0)]; // v128.const 0
  const body = [0x00, ...zeros(), ...zeros(), ...zeros(), 0xfd, 0x93, 0x02, 0x0b];
  const module = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of that type
    0x0a, body.length + 2, 0x01, body.length, ...body, // its code
  ];
  try {
    return WebAssembly.validate(new Uint8Array(module));
  } catch {
    return false;
  }
};
