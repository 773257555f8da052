#!/usr/bin/env node
/*
 * Runs the @vladmandic/face-api JavaScript reference (TF.js, wasm backend) on
 * the demo photos shipped in the face-api npm package and writes JSON fixtures
 * into ml/faceapi/testdata/ for the Go port to compare against.
 *
 * Usage (from this folder):
 *   npm ci && node generate.js [--faceapi DIR] [--out DIR]
 *
 * DIR defaults: the face-api package unpacked by scripts/setup.sh
 * (see internal/assets.FaceAPIDir) and ../../ml/faceapi/testdata.
 *
 * The fixtures are outputs of this script only; never edit them by hand.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const Module = require('module');

const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const jpeg = require('jpeg-js');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

// defaultFaceAPIDir mirrors internal/assets.FaceAPIDir.
function defaultFaceAPIDir() {
  let cache = path.join(os.homedir(), '.cache', 'face0');
  if (process.env.FACE0_CACHE) cache = process.env.FACE0_CACHE;
  else if (process.env.XDG_CACHE_HOME) cache = path.join(process.env.XDG_CACHE_HOME, 'face0');
  return path.join(cache, 'face-api');
}

const faceapiDir = path.resolve(arg('--faceapi', defaultFaceAPIDir()));
const outDir = path.resolve(arg('--out', path.join(__dirname, '..', '..', 'ml', 'faceapi', 'testdata')));
const modelDir = path.join(faceapiDir, 'model');
const demoDir = path.join(faceapiDir, 'demo');

// Every photo in the package is used for detection; descriptors of detected
// faces are limited to what the Go tests need to stay fast.
const PHOTOS = ['sample1.jpg', 'sample2.jpg', 'sample3.jpg', 'sample4.jpg', 'sample5.jpg', 'sample6.jpg'];

// The face-api package is not npm-installed here (its tfjs-node dependency
// downloads a native binary), so its CommonJS bundle is compiled by hand with
// module resolution rooted in this folder's node_modules.
function loadFaceAPI() {
  const file = path.join(faceapiDir, 'dist', 'face-api.node-wasm.js');
  if (!fs.existsSync(file)) {
    throw new Error(`${file} not found: run scripts/setup.sh to unpack @vladmandic/face-api, or pass --faceapi DIR`);
  }
  const m = new Module(file, module);
  m.filename = file;
  m.paths = module.paths;
  m._compile(fs.readFileSync(file, 'utf8'), file); // eslint-disable-line no-underscore-dangle
  return m.exports;
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

// decodeRGB returns the photo as packed 8-bit RGB, the layout the fixtures use.
function decodeRGB(file) {
  const buf = fs.readFileSync(file);
  const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: false });
  return { width: img.width, height: img.height, rgb: img.data, sha256: sha256(buf) };
}

function imageTensor(img) {
  return tf.tensor3d(img.rgb, [img.height, img.width, 3], 'int32');
}

// crop copies the rectangle [x, x+w) x [y, y+h) out of packed RGB pixels.
function crop(img, x, y, w, h) {
  if (x < 0 || y < 0 || x + w > img.width || y + h > img.height) {
    throw new Error(`crop ${w}x${h}+${x}+${y} leaves the ${img.width}x${img.height} photo; choose another face`);
  }
  const out = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) {
    const src = ((y + r) * img.width + x) * 3;
    out.set(img.rgb.subarray(src, src + w * 3), r * w * 3);
  }
  return out;
}

function boxJSON(box) {
  return { x: box.x, y: box.y, width: box.width, height: box.height };
}

async function describeTensor(faceapi, t) {
  const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(t);
  return Array.from(d);
}

function writeFixture(name, obj) {
  const file = path.join(outDir, name);
  fs.writeFileSync(file, `${JSON.stringify(obj, null, 1)}\n`);
  console.log(`wrote ${file}`); // eslint-disable-line no-console
}

async function main() {
  // Point the wasm backend at the binaries in node_modules so that nothing is
  // fetched from a CDN.
  wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
  await tf.setBackend('wasm');
  await tf.ready();
  const faceapi = loadFaceAPI();
  await faceapi.nets.tinyFaceDetector.loadFromDisk(modelDir);
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);

  const generator = {
    script: 'scripts/faceapi-reference/generate.js',
    faceapi: faceapi.version,
    tfjs: tf.version.tfjs,
    backend: tf.getBackend(),
    node: process.version,
    jpegDecoder: `jpeg-js ${require('jpeg-js/package.json').version}`,
  };
  fs.mkdirSync(outDir, { recursive: true });

  const tinyOpts = new faceapi.TinyFaceDetectorOptions(); // face-api defaults
  const ssdOpts = new faceapi.SsdMobilenetv1Options(); // face-api defaults
  const tiny = [];
  const ssd = [];
  const faces = [];
  const crops = [];
  const images = {};

  for (const name of PHOTOS) {
    const img = decodeRGB(path.join(demoDir, name));
    images[name] = img;
    const t = imageTensor(img);
    const photo = { image: `demo/${name}`, sha256: img.sha256, width: img.width, height: img.height };

    const tinyDets = await faceapi.detectAllFaces(t, tinyOpts);
    tiny.push({ ...photo, detections: tinyDets.map((d) => ({ score: d.score, box: boxJSON(d.box) })) });

    const t0 = Date.now();
    const ssdDets = await faceapi.detectAllFaces(t, ssdOpts);
    ssd.push({ ...photo, detections: ssdDets.map((d) => ({ score: d.score, box: boxJSON(d.box) })) });
    console.log(`${name}: ${img.width}x${img.height}, tiny ${tinyDets.length}, ssd ${ssdDets.length} faces (ssd ${Date.now() - t0} ms)`); // eslint-disable-line no-console

    // Descriptors of every face the tiny detector found, cropped exactly as
    // face-api's extractFaceTensors does (clip at the borders, then floor).
    const rects = tinyDets.map((d) => d.box.clipAtImageBorders(img.width, img.height));
    const faceTensors = await faceapi.extractFaceTensors(t, tinyDets);
    for (let i = 0; i < faceTensors.length; i++) {
      const r = rects[i];
      faces.push({
        image: `demo/${name}`,
        crop: { x: r.x, y: r.y, width: r.width, height: r.height },
        descriptor: await describeTensor(faceapi, faceTensors[i]),
      });
    }
    tf.dispose(faceTensors);
    tf.dispose(t);
  }

  // Fixed crops whose pixels are embedded in the fixture, so the Go port can be
  // compared layer-exactly without depending on either JPEG decoder. Each is
  // centred on a detected face: a 150x150 square is fed to the network as is;
  // the wide crop is shrunk and the tall one (odd size difference) enlarged by
  // face-api's centred zero padding plus bilinear resize. They are kept small
  // because their pixels live in the fixture.
  const centred = (face, w, h) => {
    const cx = Math.round(face.crop.x + face.crop.width / 2);
    const cy = Math.round(face.crop.y + face.crop.height / 2);
    return { image: face.image, x: cx - Math.floor(w / 2), y: cy - Math.floor(h / 2), width: w, height: h };
  };
  const fixed = [
    centred(faces[0], 150, 150),
    centred(faces.find((f) => f.image === 'demo/sample2.jpg'), 180, 136),
    centred(faces[faces.length - 1], 97, 120),
  ];
  for (const c of fixed) {
    const img = images[c.image.replace('demo/', '')];
    const pixels = crop(img, c.x, c.y, c.width, c.height);
    const t = tf.tensor3d(pixels, [c.height, c.width, 3], 'int32');
    crops.push({
      source: { image: c.image, x: c.x, y: c.y, width: c.width, height: c.height },
      width: c.width,
      height: c.height,
      rgbBase64: Buffer.from(pixels).toString('base64'),
      descriptor: await describeTensor(faceapi, t),
    });
    tf.dispose(t);
  }

  // A small image whose pixels are embedded, so both detectors can be
  // compared exactly, independent of JPEG decoding: a square around the
  // first face, twice its size, shrunk to 160x160 by TF.js and rounded.
  const f0 = faces[0];
  const src = images[f0.image.replace('demo/', '')];
  const side = Math.min(2 * Math.max(f0.crop.width, f0.crop.height), src.height);
  const region = centred(f0, side, side);
  region.x = Math.max(0, Math.min(region.x, src.width - side));
  region.y = Math.max(0, Math.min(region.y, src.height - side));
  const small = tf.tidy(() => {
    const t = tf.tensor3d(crop(src, region.x, region.y, side, side), [side, side, 3], 'float32');
    return tf.clipByValue(tf.round(tf.image.resizeBilinear(t, [160, 160])), 0, 255).toInt();
  });
  const smallPixels = Uint8Array.from(await small.data());
  const exact = {
    source: { ...region, resizedTo: [160, 160], resize: 'tf.image.resizeBilinear, rounded' },
    width: 160,
    height: 160,
    rgbBase64: Buffer.from(smallPixels).toString('base64'),
    tinyFaceDetector: (await faceapi.detectAllFaces(small, tinyOpts)).map((d) => ({ score: d.score, box: boxJSON(d.box) })),
    ssdMobilenetv1: (await faceapi.detectAllFaces(small, ssdOpts)).map((d) => ({ score: d.score, box: boxJSON(d.box) })),
  };
  tf.dispose(small);
  writeFixture('detector_exact.json', {
    generator,
    options: {
      tinyFaceDetector: { inputSize: tinyOpts.inputSize, scoreThreshold: tinyOpts.scoreThreshold },
      ssdMobilenetv1: { minConfidence: ssdOpts.minConfidence, maxResults: ssdOpts.maxResults },
    },
    note: 'pixels given exactly as packed 8-bit RGB rows',
    ...exact,
  });
  writeFixture('tiny_face_detector.json', {
    generator,
    options: { inputSize: tinyOpts.inputSize, scoreThreshold: tinyOpts.scoreThreshold },
    photos: tiny,
  });
  writeFixture('ssd_mobilenetv1.json', {
    generator,
    options: { minConfidence: ssdOpts.minConfidence, maxResults: ssdOpts.maxResults },
    photos: ssd,
  });
  writeFixture('face_recognition.json', {
    generator,
    note: 'faces: descriptors of the tiny_face_detector.json crops, cut from the photo decoded by jpegDecoder; crops: pixels given exactly as packed 8-bit RGB rows',
    faces,
    crops,
  });
}

main().catch((err) => {
  console.error(err); // eslint-disable-line no-console
  process.exit(1);
});
