import HostKit

/// Turns libbpf's `-errno` return convention into a thrown ``SystemError``.
@discardableResult
func check(_ result: Int32, _ operation: @autoclosure () -> String, _ object: @autoclosure () -> String) throws -> Int32 {
    if result < 0 { throw SystemError(operation(), object(), errno: -result) }
    return result
}
