"""{{name}}: a Lambda-style Python function.

`event` is API Gateway's HTTP event (version 2.0): rawPath, headers,
queryStringParameters, body, requestContext. Return a dict with statusCode,
headers and body, or any JSON value. print() goes to `nimbus logs {{name}}`.
"""

import json


def lambda_handler(event, context):
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    print(f"{{name}}: hello to {name}")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": f"Hello, {name}!", "function": context.function_name}),
    }
