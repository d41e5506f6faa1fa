"""A Lambda-style Python handler: deploy it with

    nimbus deploy py-hello --code examples/python-hello --runtime python3 \
        --handler app.lambda_handler --public

and call it with `curl localhost:8080/fn/default/py-hello?name=Ada`.
"""

import json


def lambda_handler(event, context):
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"hello": name, "version": context.function_version}),
    }
