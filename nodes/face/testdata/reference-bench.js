#!/usr/bin/env node
/*
 * Times the face-api JavaScript reference (TF.js 4.22, wasm backend) on one
 * photo: detection with ssd_mobilenetv1 or tiny_face_detector, then the
 * 128-d descriptors of the largest face and of its mirror image, as
 * DetectFace + EmbedFace do in Go.
 * Run by BenchmarkDetectEmbed (bench_test.go) with NODE_PATH pointing at
 * scripts/faceapi-reference/node_modules.
 *
 *   node reference-bench.js FACEAPI_DIR PHOTO.jpg RUNS
 *
 * Prints one JSON line: {"load_ms":..., "ssd-mobilenet":[ms...], "tiny-face":[ms...]}.
 * Decoding the JPEG is not timed (the Go nodes receive decoded pixels too);
 * the first run of each detector is a warm-up and not reported.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const Module = require('module');

const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const jpeg = require('jpeg-js');

const [faceapiDir, photo, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);

function loadFaceAPI() {
  const file = path.join(faceapiDir, 'dist', 'face-api.node-wasm.js');
  const m = new Module(file, module);
  m.filename = file;
  m.paths = (process.env.NODE_PATH || '').split(path.delimiter).concat(module.paths);
  m._compile(fs.readFileSync(file, 'utf8'), file); // eslint-disable-line no-underscore-dangle
  return m.exports;
}

async function main() {
  const t0 = Date.now();
  wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
  await tf.setBackend('wasm');
  await tf.ready();
  const faceapi = loadFaceAPI();
  const modelDir = path.join(faceapiDir, 'model');
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.tinyFaceDetector.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const img = jpeg.decode(fs.readFileSync(photo), { useTArray: true, formatAsRGBA: false });
  const t = tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
  const out = { load_ms: Date.now() - t0, width: img.width, height: img.height, tfjs: tf.version.tfjs, backend: tf.getBackend() };

  const detectors = {
    'ssd-mobilenet': new faceapi.SsdMobilenetv1Options(),
    'tiny-face': new faceapi.TinyFaceDetectorOptions(),
  };
  for (const [name, opts] of Object.entries(detectors)) {
    const times = [];
    for (let i = 0; i <= runs; i++) {
      const start = process.hrtime.bigint();
      const dets = await faceapi.detectAllFaces(t, opts);
      let largest = dets[0];
      for (const d of dets) if (d.box.area > largest.box.area) largest = d;
      const faces = await faceapi.extractFaceTensors(t, [largest]);
      // EmbedFace averages the descriptors of the crop and its mirror image,
      // so the reference computes both too.
      const mirrored = tf.reverse(faces[0], 1);
      await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(faces[0]);
      await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(mirrored);
      tf.dispose(faces);
      tf.dispose(mirrored);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (i > 0) times.push(ms);
    }
    out[name] = times;
  }
  console.log(JSON.stringify(out)); // eslint-disable-line no-console
}

main().catch((err) => {
  console.error(err); // eslint-disable-line no-console
  process.exit(1);
});
