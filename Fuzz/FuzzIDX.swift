// Fuzz target: the IDX (MNIST / Fashion-MNIST) reader, plain and gzipped.
// Input byte 0 selects the mode, the rest is the file content:
//   bit 0: gzip-compress the content before writing it (else written as is, which also
//          covers corrupt gzip streams when the content starts with 1f 8b)
//   bit 1: read it as a label file (else as an image file)
//   bit 2: a pair: 2 bytes (big-endian) give the image file's length L, then L bytes of image
//          file, then the label file; both go through IDXFormat.load (the dataset is built).
@testable import Data

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let body = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let gzip = mode & 1 != 0
    do {
        if mode & 4 != 0 {
            guard body.count >= 2 else { return 0 }
            let l = min(Int(body[0]) << 8 | Int(body[1]), body.count - 2)
            let images = FuzzSupport.write(UnsafeRawBufferPointer(rebasing: body[2..<(2 + l)]), to: "images", gzip: gzip)
            let labels = FuzzSupport.write(UnsafeRawBufferPointer(rebasing: body[(2 + l)...]), to: "labels", gzip: gzip)
            let ds = try IDXFormat.load(name: "fuzz", imagesPath: images, labelsPath: labels)
            precondition(ds.count > 0 && ds.channels == 1)
        } else if mode & 2 != 0 {
            let path = FuzzSupport.write(body, to: "labels", gzip: gzip)
            let labels = try IDXFormat.readLabels(path: path)
            precondition(labels.allSatisfy { $0 >= 0 && $0 < 10 })
        } else {
            let path = FuzzSupport.write(body, to: "images", gzip: gzip)
            let images = try IDXFormat.readImages(path: path)
            precondition(images.pixels.count == images.count * images.rows * images.cols)
        }
    } catch {
        FuzzSupport.check(error, allowed: [DatasetError.self])
    }
    return 0
}
