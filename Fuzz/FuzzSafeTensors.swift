// Fuzz target: safetensors decoding (SafeTensors.decode, then a strict load into a small model
// store when it decodes) and checkpoint verification (CheckpointStore.verify: decode, format
// tags, CRC). The input is the file content.
import NN
import Coordinator

private let stores: [ParameterStore] = {
    let p = ParameterStore()
    _ = p.declare("0.0.weight", shape: [2, 1, 3, 3])
    _ = p.declare("7.bias", shape: [3])
    p.finalize()
    let b = ParameterStore()
    _ = b.declare("0.1.running_mean", shape: [2])
    _ = b.declare("0.1.num_batches_tracked", shape: [], type: .int64)
    b.finalize()
    return [p, b]
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let decoded = try SafeTensors.decode(bytes, file: "fuzz.safetensors")
        precondition(decoded.order.count == decoded.tensors.count)
        for (_, t) in decoded.tensors { precondition(t.values.count == t.shape.reduce(1, *)) }
        do { try SafeTensors.load(decoded.tensors, into: stores, file: "fuzz.safetensors") } catch {
            FuzzSupport.check(error, allowed: [SafeTensorsError.self])
        }
    } catch {
        FuzzSupport.check(error, allowed: [SafeTensorsError.self])
    }
    do {
        _ = try Checkpoint.verify(bytes, file: "fuzz.ckpt")
    } catch {
        FuzzSupport.check(error, allowed: [CheckpointError.self])
    }
    return 0
}
