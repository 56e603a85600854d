// Fuzz target: the CIFAR-10 binary reader. Input byte 0: bit 0 gzip-compresses the rest
// before it is written as test_batch.bin (else written as is); then the test split is loaded
// from that folder (file checks, records, labels, the dataset built).
import Foundation
@testable import Data

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCIFAR(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let body = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let root = FuzzSupport.folder + "/cifar"
    if !FileManager.default.fileExists(atPath: root) {
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }
    FuzzSupport.write(body, to: "cifar/test_batch.bin", gzip: data[0] & 1 != 0)
    do {
        let ds = try CIFAR10Format.load(root: root, split: .test)
        precondition(ds.count > 0 && ds.channels == 3 && ds.height == 32 && ds.width == 32)
    } catch {
        FuzzSupport.check(error, allowed: [DatasetError.self])
    }
    return 0
}
