import ServalTensor

/// The bytes a compiled session keeps resident: the optimized graph's initializers and attribute arrays, what each
/// kernel holds of its own (weights packed or converted at load, tree tables, lookup maps), and the buffers its
/// pools keep between runs. Kernels are walked by reflection once, at load, so a new kernel is counted without
/// having to declare anything; shared tensor buffers are counted once.
enum MemoryFootprint {
    static func bytes(graph: Graph, plans: [ExecutionPlan], pooledBytes: Int) -> Int {
        var tally = MemoryTally()
        // The graph (initializers, nodes and their attribute arrays) and each plan (kernels, steps, slot tables).
        visit(graph, into: &tally, depth: 0)
        for plan in plans { visit(plan, into: &tally, depth: 0) }
        tally.add(bytes: pooledBytes)
        return tally.bytes
    }

    /// Adds what `value` holds: tensors by buffer, arrays by their element storage (descending only into elements
    /// that hold references themselves), strings by their bytes, and the stored properties of structs and enums.
    /// Class instances other than tensor storage (caches, locks) are small and skipped.
    static func visit(_ value: Any, into tally: inout MemoryTally, depth: Int) {
        guard depth < 8 else { return }
        switch value {
        case let tensor as Tensor:
            tally.add(tensor)
        case let string as String:
            tally.add(bytes: string.utf8.count)
        case let collection as any FootprintCollection:
            guard tally.add(bytes: collection.storageBytes, buffer: collection.buffer) else { return }
            if collection.elementsHoldReferences {
                for element in collection.footprintElements { visit(element, into: &tally, depth: depth + 1) }
            }
        default:
            let mirror = Mirror(reflecting: value)
            guard mirror.displayStyle != .class else { return }
            for child in mirror.children { visit(child.value, into: &tally, depth: depth + 1) }
        }
    }
}

/// Arrays and dictionaries as the footprint walk sees them.
protocol FootprintCollection {
    var storageBytes: Int { get }
    /// The element buffer, shared by copies (nil when there is none to share).
    var buffer: UnsafeRawPointer? { get }
    var elementsHoldReferences: Bool { get }
    var footprintElements: [Any] { get }
}

extension Array: FootprintCollection {
    var storageBytes: Int { capacity * MemoryLayout<Element>.stride }
    var buffer: UnsafeRawPointer? { capacity == 0 ? nil : withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) } }
    var elementsHoldReferences: Bool { !_isPOD(Element.self) }
    var footprintElements: [Any] { map { $0 } }
}

extension Dictionary: FootprintCollection {
    var storageBytes: Int { capacity * (MemoryLayout<Key>.stride + MemoryLayout<Value>.stride) }
    var buffer: UnsafeRawPointer? { nil }
    var elementsHoldReferences: Bool { !_isPOD(Key.self) || !_isPOD(Value.self) }
    var footprintElements: [Any] { map { ($0.key, $0.value) } }
}
