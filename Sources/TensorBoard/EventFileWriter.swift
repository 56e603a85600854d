// TensorBoard event files: `events.out.tfevents.<seconds>.<host>` in the run folder, a sequence
// of TFRecords, each
//   uint64 length (little endian) | uint32 masked CRC-32C of the length | data | uint32 masked CRC-32C of data
// whose data is one serialized Event (Generated/tensorboard_event.pb.swift): first the file
// version, then one Summary of scalars per call to `add`. Every `add` goes to the file at once
// (unbuffered: a crash of the process loses nothing already logged); a resumed run starts a new
// file and TensorBoard shows both.
import Foundation
import SwiftProtobuf

public final class EventFileWriter {
    public let path: String
    private let handle: FileHandle

    /// Creates the event file in `directory` (which must exist). Throws naming the file when it
    /// cannot be created.
    public init(directory: String, host: String = ProcessInfo.processInfo.hostName,
                now: Date = Date()) throws {
        let seconds = Int(now.timeIntervalSince1970)
        path = (directory as NSString).appendingPathComponent("events.out.tfevents.\(seconds).\(host)")
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let h = FileHandle(forWritingAtPath: path) else {
            throw EventFileError("cannot create the TensorBoard event file \(path)")
        }
        handle = h
        var version = Resnet_Tensorboard_Event()
        version.wallTime = now.timeIntervalSince1970
        version.fileVersion = "brain.Event:2"
        try write(version)
    }

    deinit { try? handle.close() }

    /// Scalars (tag, value) at `step`, as one event.
    public func add(step: Int, scalars: [(String, Double)], wallTime: Date = Date()) throws {
        var summary = Resnet_Tensorboard_Summary()
        summary.value = scalars.map { tag, value in
            var v = Resnet_Tensorboard_Summary.Value()
            v.tag = tag
            v.simpleValue = Float(value)
            return v
        }
        var event = Resnet_Tensorboard_Event()
        event.wallTime = wallTime.timeIntervalSince1970
        event.step = Int64(step)
        event.summary = summary
        try write(event)
    }

    private func write(_ event: Resnet_Tensorboard_Event) throws {
        let data: Data = try event.serializedBytes()
        do {
            try handle.write(contentsOf: EventFileWriter.record(data))
        } catch {
            throw EventFileError("cannot write the TensorBoard event file \(path): \(error.localizedDescription)")
        }
    }

    /// One TFRecord around `data`.
    static func record(_ data: Data) -> Data {
        var out = Data(capacity: data.count + 16)
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
        out.append(lengthBytes)
        var lengthCRC = CRC32C.masked(lengthBytes).littleEndian
        out.append(withUnsafeBytes(of: &lengthCRC) { Data($0) })
        out.append(data)
        var dataCRC = CRC32C.masked(data).littleEndian
        out.append(withUnsafeBytes(of: &dataCRC) { Data($0) })
        return out
    }
}

public struct EventFileError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
