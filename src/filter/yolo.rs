//! YOLO object filter through ONNX Runtime (placeholder until implemented).
